//! Dotted numeric versions (`0.3.1`, `18.16.1`, `24.3.2.23`): amigo's own and the database servers'.

use std::fmt;

/// A version compared field by field, missing fields counting as zero (`1.2` == `1.2.0`).
#[derive(Debug, Clone, Eq)]
pub struct Version(Vec<u32>);

impl Version {
    /// Reads the leading dotted numbers of `text`; anything after them (`-rc1`, ` (official build)`) is ignored.
    pub fn parse(text: &str) -> Option<Version> {
        let leading: String = text.trim().chars().take_while(|character| character.is_ascii_digit() || *character == '.').collect();
        let numeric: Vec<u32> = leading.split('.').map_while(|part| part.parse().ok()).collect();
        (!numeric.is_empty()).then_some(Version(numeric))
    }

    /// True when this version is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        *self >= Version(vec![major, minor])
    }

    fn field(&self, index: usize) -> u32 {
        self.0.get(index).copied().unwrap_or(0)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (0..self.0.len().max(other.0.len()))
            .map(|index| self.field(index).cmp(&other.field(index)))
            .find(|ordering| ordering.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        formatter.write_str(&parts.join("."))
    }
}

/// An inclusive range of versions; either end may be open.
#[derive(Debug, Clone, Default)]
pub struct VersionRange {
    pub min: Option<Version>,
    pub max: Option<Version>,
}

impl VersionRange {
    pub fn contains(&self, version: &Version) -> bool {
        self.min.as_ref().is_none_or(|min| version >= min) && self.max.as_ref().is_none_or(|max| version <= max)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.min, &self.max) {
            (Some(min), Some(max)) => write!(formatter, "{min} - {max}"),
            (Some(min), None) => write!(formatter, ">= {min}"),
            (None, Some(max)) => write!(formatter, "<= {max}"),
            (None, None) => formatter.write_str("any"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_compare_numerically_with_missing_fields_as_zero() {
        assert!(version("18.16.1").at_least(18, 16));
        assert!(!version("18.16.1").at_least(24, 1));
        assert!(version("24.3.2.23").at_least(24, 1));
        assert!(version("24.10.1") > version("24.9.7"));
        assert_eq!(version("1.2"), version("1.2.0"));
        assert_eq!(version("0.3.0-rc1").to_string(), "0.3.0");
        assert_eq!(version("15.18 (Debian 15.18-0+deb12u1)").to_string(), "15.18");
        assert_eq!(Version::parse("banana"), None);
    }

    #[test]
    fn ranges_are_inclusive_and_may_be_open() {
        let range = VersionRange { min: Some(version("0.1")), max: Some(version("0.4")) };
        assert!(range.contains(&version("0.1.0")));
        assert!(range.contains(&version("0.4.0")));
        assert!(!range.contains(&version("0.4.1")));
        assert!(VersionRange::default().contains(&version("99")));
        assert_eq!(range.to_string(), "0.1 - 0.4");
    }
}
