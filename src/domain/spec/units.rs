//! Value types with a textual YAML form: durations (`120s`, `500ms`), resource quantities
//! (`250m`, `512Mi`) and the rollout surge (`3` or `25%`).
//!
//! Each parses strictly and serialises back to a canonical string, so a value that round-trips
//! through the planner never shows up as a spurious diff.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration written as a number followed by a unit: `ms`, `s`, `m` or `h` (`90s`, `1m30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }
    pub fn as_std(&self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid duration {s:?}: expected a number and a unit (ms, s, m, h), e.g. 120s")
        };
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total_ms: u128 = 0;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let n: u128 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let factor = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return Err(bad()),
            };
            total_ms = total_ms
                .checked_add(n.checked_mul(factor).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            rest = &rest[unit_len..];
        }
        let ms = u64::try_from(total_ms).map_err(|_| bad())?;
        Ok(Self::from_millis(ms))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            write!(f, "0s")
        } else if ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1_000) {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h))+$",
            "description": "A duration: a number and a unit (ms, s, m, h), e.g. 120s or 1m30s."
        })
    }
}

/// A Kubernetes resource quantity (`250m`, `1`, `0.5`, `512Mi`, `1G`), kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quantity(String);

const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];
const DECIMAL_SUFFIXES: [(&str, i32); 8] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
];

impl Quantity {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The quantity as a plain number (cores, bytes), for comparing requests with limits.
    pub fn value(&self) -> f64 {
        Self::parse_value(&self.0).unwrap_or(f64::NAN)
    }

    /// The quantity times `factor`, rounded up to a whole number, computed exactly: what
    /// Kubernetes hands a container for its resources (`ceil_times(1000)` is its milli-value,
    /// `ceil_times(1)` its value). `None` when it does not fit in a `u128`.
    pub fn ceil_times(&self, factor: u128) -> Option<u128> {
        let s = self.0.as_str();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        let digits: u128 = format!("{int}{frac}").parse().ok()?;
        let mut num = digits.checked_mul(factor)?;
        let mut den = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        let exponent = if suffix.is_empty() {
            0
        } else if let Some((_, p)) = BINARY_SUFFIXES.iter().find(|(x, _)| *x == suffix) {
            num = num.checked_mul(1024u128.checked_pow(*p)?)?;
            0
        } else if let Some((_, p)) = DECIMAL_SUFFIXES.iter().find(|(x, _)| *x == suffix) {
            *p
        } else {
            suffix.strip_prefix(['e', 'E'])?.parse().ok()?
        };
        let scale = 10u128.checked_pow(exponent.unsigned_abs())?;
        if exponent >= 0 {
            num = num.checked_mul(scale)?;
        } else {
            den = den.checked_mul(scale)?;
        }
        Some(num.div_ceil(den))
    }

    fn parse_value(s: &str) -> Option<f64> {
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        if number.is_empty() || number.starts_with('.') && number.len() == 1 {
            return None;
        }
        let n: f64 = number.parse().ok()?;
        let scale = if suffix.is_empty() {
            1.0
        } else if let Some((_, p)) = BINARY_SUFFIXES.iter().find(|(x, _)| *x == suffix) {
            1024f64.powi(*p as i32)
        } else if let Some((_, p)) = DECIMAL_SUFFIXES.iter().find(|(x, _)| *x == suffix) {
            10f64.powi(*p)
        } else if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
            10f64.powi(exp.parse().ok()?)
        } else {
            return None;
        };
        Some(n * scale)
    }
}

impl FromStr for Quantity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match Self::parse_value(s) {
            Some(_) => Ok(Self(s.to_string())),
            None => Err(format!(
                "invalid quantity {s:?}: expected a number with an optional suffix (m, k, M, G, Ki, Mi, Gi, ...), e.g. 250m or 512Mi"
            )),
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A quantity may be written as a YAML number (`cpu: 1`) or a string (`cpu: 250m`).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Int(u64),
    Float(f64),
    Str(String),
}

impl NumberOrString {
    fn into_string(self) -> String {
        match self {
            Self::Int(n) => n.to_string(),
            Self::Float(x) => x.to_string(),
            Self::Str(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        NumberOrString::deserialize(d)?
            .into_string()
            .parse()
            .map_err(de::Error::custom)
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?([numkMGTP]|[KMGTPE]i|[eE][0-9]+)?$"},
                {"type": "number", "minimum": 0}
            ],
            "description": "A Kubernetes resource quantity, e.g. 250m, 1, 512Mi."
        })
    }
}

/// Rollout surge: a room count or a percentage of the target (rounded up, at least one room).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Surge {
    Count(u32),
    Percent(u32),
}

impl Default for Surge {
    fn default() -> Self {
        Surge::Percent(25)
    }
}

impl Surge {
    /// Surge in rooms for a fleet of `target` rooms; never less than one, so a rollout always moves.
    pub fn rooms(&self, target: u32) -> u32 {
        let n = match *self {
            Surge::Count(n) => n,
            Surge::Percent(p) => (u64::from(target) * u64::from(p)).div_ceil(100) as u32,
        };
        n.max(1)
    }
}

impl FromStr for Surge {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("invalid maxSurge {s:?}: expected a room count (3) or a percentage (25%)");
        match s.strip_suffix('%') {
            Some(p) => p.trim().parse().map(Surge::Percent).map_err(|_| bad()),
            None => s.trim().parse().map(Surge::Count).map_err(|_| bad()),
        }
    }
}

impl fmt::Display for Surge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Surge::Count(n) => write!(f, "{n}"),
            Surge::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Surge {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Surge::Count(n) => s.serialize_u32(*n),
            Surge::Percent(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Surge {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        NumberOrString::deserialize(d)?
            .into_string()
            .parse()
            .map_err(de::Error::custom)
    }
}

impl JsonSchema for Surge {
    fn schema_name() -> Cow<'static, str> {
        "Surge".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+%$"}
            ],
            "description": "A room count (3) or a percentage of the target (25%); at least one room."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_canonically() {
        for (text, ms, canon) in [
            ("120s", 120_000, "2m"),
            ("500ms", 500, "500ms"),
            ("1m30s", 90_000, "90s"),
            ("2h", 7_200_000, "2h"),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.0.as_millis(), ms, "{text}");
            assert_eq!(d.to_string(), canon);
        }
        for bad in ["", "10", "s", "10 parsecs", "-5s", "1.5s"] {
            assert!(
                bad.parse::<Duration>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn quantities_compare_by_value() {
        let q = |s: &str| s.parse::<Quantity>().unwrap().value();
        assert_eq!(q("250m"), 0.25);
        assert_eq!(q("1"), 1.0);
        assert_eq!(q("512Mi"), 512.0 * 1024.0 * 1024.0);
        assert!(q("1Gi") > q("512Mi"));
        for bad in ["", "abc", "12Q", "Mi"] {
            assert!(
                bad.parse::<Quantity>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn quantities_scale_exactly_and_round_up() {
        let q = |s: &str, factor: u128| s.parse::<Quantity>().unwrap().ceil_times(factor);
        assert_eq!(q("500m", 1000), Some(500));
        assert_eq!(q("500m", 1), Some(1), "half a core rounds up to one");
        assert_eq!(
            q("0.1", 1000),
            Some(100),
            "no floating point error rounds it up"
        );
        assert_eq!(q("2", 1000), Some(2000));
        assert_eq!(q("1.5Gi", 1), Some(1610612736));
        assert_eq!(q("512Mi", 1), Some(512 << 20));
        assert_eq!(q("1k", 1), Some(1000));
        assert_eq!(q("1500u", 1000), Some(2));
        assert_eq!(q("1e3", 1), Some(1000));
        assert_eq!(q("12E-1", 1), Some(2));
        assert_eq!(q("0", 1000), Some(0));
    }

    #[test]
    fn surge_rounds_up_and_moves_at_least_one_room() {
        assert_eq!(Surge::Percent(25).rooms(10), 3);
        assert_eq!(Surge::Percent(25).rooms(0), 1);
        assert_eq!(Surge::Count(0).rooms(10), 1);
        assert_eq!(Surge::Count(4).rooms(10), 4);
        assert_eq!("25%".parse::<Surge>().unwrap(), Surge::Percent(25));
        assert!("lots".parse::<Surge>().is_err());
    }
}
