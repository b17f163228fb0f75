//! How the page's resources go from the server's render to the browser: as JSON read from bytes, the way the
//! server functions' answers are read.

use std::future::Future;

use leptos::prelude::*;
use leptos::server::codee::{Decoder, Encoder};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// JSON read with `serde_json::from_slice`. Leptos's default resource codec reads with `from_str` while server
/// functions read their answers with `from_slice`, and serde_json compiles a type's reader once per kind of input:
/// with both, the browser's build would hold the reader of every answer type twice.
pub struct JsonBytes;

impl<T: Serialize> Encoder<T> for JsonBytes {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(value)
    }
}

impl<T: DeserializeOwned> Decoder<T> for JsonBytes {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(encoded: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(encoded.as_bytes())
    }
}

/// A resource that the server renders and the browser takes over, sent as [`JsonBytes`].
pub type Loaded<T> = Resource<T, JsonBytes>;

/// `Resource::new` with [`JsonBytes`]: `fetcher` runs again whenever `source` changes.
pub fn load<S, T, Fut>(source: impl Fn() -> S + Send + Sync + 'static, fetcher: impl Fn(S) -> Fut + Send + Sync + 'static) -> Loaded<T>
where
    S: Send + Sync + Clone + PartialEq + 'static,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MigrationRow;

    #[test]
    fn a_row_comes_back_as_it_went() {
        let row = MigrationRow { name: "0001_events_sort_key".into(), operation_count: 5, ..MigrationRow::default() };
        let encoded = <JsonBytes as Encoder<MigrationRow>>::encode(&row).unwrap();
        assert_eq!(<JsonBytes as Decoder<MigrationRow>>::decode(&encoded).unwrap(), row);
    }
}
