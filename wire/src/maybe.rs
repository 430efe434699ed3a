//! `Maybe<T>`: an optional JSON field that remembers whether it was absent, `null`, or set.
//!
//! The API writes most optional fields as an explicit `null`, but newer payloads sometimes
//! leave them out. `Option<T>` cannot tell the two apart, so re-serializing a parsed payload
//! would change it. `Maybe<T>` keeps the difference:
//!
//! | wire                | value              |
//! |---------------------|--------------------|
//! | key missing         | `Maybe::Absent`    |
//! | `"key": null`       | `Maybe::Null`      |
//! | `"key": <value>`    | `Maybe::Present(v)`|
//!
//! A struct field of this type must carry
//! `#[serde(default, skip_serializing_if = "Maybe::is_absent")]`: `default` turns a missing key
//! into `Absent` (serde would otherwise report it as `null`), and the skip leaves it out again
//! on output. Outside a struct field (for example inside a `Vec`) `Absent` serializes as `null`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A JSON field that can be absent, explicitly `null`, or hold a value.
///
/// See the [module documentation](self) for the serde attributes a field of this type needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Maybe<T> {
    /// The key was not present in the object.
    #[default]
    Absent,
    /// The key was present with the value `null`.
    Null,
    /// The key was present with a non-null value.
    Present(T),
}

impl<T> Maybe<T> {
    /// `true` for [`Maybe::Absent`]; used as `skip_serializing_if`.
    pub fn is_absent(&self) -> bool {
        matches!(self, Maybe::Absent)
    }

    /// `true` for [`Maybe::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Maybe::Null)
    }

    /// `true` for [`Maybe::Present`].
    pub fn is_present(&self) -> bool {
        matches!(self, Maybe::Present(_))
    }

    /// The value, if present (`Absent` and `Null` both give `None`).
    pub fn get(&self) -> Option<&T> {
        match self {
            Maybe::Present(v) => Some(v),
            _ => None,
        }
    }

    /// Mutable access to the value, if present.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        match self {
            Maybe::Present(v) => Some(v),
            _ => None,
        }
    }

    /// Converts into an `Option`, losing the absent/null distinction.
    pub fn into_option(self) -> Option<T> {
        match self {
            Maybe::Present(v) => Some(v),
            _ => None,
        }
    }

    /// Borrows the content: `&Maybe<T>` to `Maybe<&T>`.
    pub fn as_ref(&self) -> Maybe<&T> {
        match self {
            Maybe::Absent => Maybe::Absent,
            Maybe::Null => Maybe::Null,
            Maybe::Present(v) => Maybe::Present(v),
        }
    }

    /// Maps the present value, keeping `Absent` and `Null` as they are.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Maybe<U> {
        match self {
            Maybe::Absent => Maybe::Absent,
            Maybe::Null => Maybe::Null,
            Maybe::Present(v) => Maybe::Present(f(v)),
        }
    }

    /// `Some(v)` becomes `Present(v)`, `None` becomes `Absent` (the key is left out).
    pub fn some_or_absent(value: Option<T>) -> Self {
        value.map_or(Maybe::Absent, Maybe::Present)
    }

    /// `Some(v)` becomes `Present(v)`, `None` becomes `Null` (the key is written as `null`).
    pub fn some_or_null(value: Option<T>) -> Self {
        value.map_or(Maybe::Null, Maybe::Present)
    }
}

impl<T: Clone> Maybe<&T> {
    /// Clones the borrowed content: `Maybe<&T>` to `Maybe<T>`.
    pub fn cloned(self) -> Maybe<T> {
        self.map(T::clone)
    }
}

impl<T> From<T> for Maybe<T> {
    fn from(value: T) -> Self {
        Maybe::Present(value)
    }
}

impl<T: Serialize> Serialize for Maybe<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Maybe::Present(v) => serializer.serialize_some(v),
            Maybe::Absent | Maybe::Null => serializer.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Maybe<T> {
    /// Only called when the key is present (absent keys go through `#[serde(default)]`),
    /// so `null` means [`Maybe::Null`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Maybe::some_or_null(Option::<T>::deserialize(deserializer)?))
    }
}
