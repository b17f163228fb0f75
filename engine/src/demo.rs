//! Demo data: the product's ClickHouse schema (events, person) and fast server-side generation of rows.
