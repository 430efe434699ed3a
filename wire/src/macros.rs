//! Internal macros and helpers: open string enums and `type`-tagged unions with a lossless
//! fallback variant.

use serde::de::Error as _;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// Defines an enum that serializes as a JSON string, with one variant per known value and an
/// `Other(String)` variant that keeps any value not listed, so nothing is lost on a round trip.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this crate does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// The wire string for this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )*
                    $name::Other(s) => s.as_str(),
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $( $text => $name::$variant, )*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match $name::from(s.as_str()) {
                    $name::Other(_) => $name::Other(s),
                    known => known,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($name::from(<String as ::serde::Deserialize>::deserialize(d)?))
            }
        }
    };
}

/// Defines a union of JSON objects discriminated by their `type` key.
///
/// Each known tag maps to a variant holding the object's body (every key except `type`); any
/// other object, including one without a string `type`, lands in `Other(Value)` unchanged.
/// A known tag whose body does not match its struct is an error, not `Other`.
///
/// With `, serde` after the description, a standard `from_value` and the
/// `Serialize`/`Deserialize` impls are generated too (the `type` key is written first, then
/// the body's keys).
macro_rules! tagged_union {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal, serde) { $($body:tt)* }
    ) => {
        tagged_union!($(#[$meta])* pub enum $name ($what) { $($body)* });
        tagged_union!(@serde $name $what { $($body)* });
    };

    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $tag:literal => $variant:ident($ty:ty), )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($ty), )*
            /// An object with an unknown or missing `type`, kept verbatim (including `type`).
            Other(::serde_json::Value),
        }

        impl $name {
            /// The `type` tags this union knows about.
            pub const KNOWN_TYPES: &'static [&'static str] = &[$($tag),*];

            /// The `type` tag: the known tag of the variant, or the `type` string of an
            /// `Other` object (if it has one).
            pub fn type_name(&self) -> Option<&str> {
                match self {
                    $( $name::$variant(_) => Some($tag), )*
                    $name::Other(v) => v.get("type").and_then(::serde_json::Value::as_str),
                }
            }

            /// Builds the variant for `tag` from an object (its `type` key, if any, is
            /// removed first). Unknown tags give `Other` with the object as it was.
            pub(crate) fn from_tagged_body(
                tag: &str,
                mut map: ::serde_json::Map<String, ::serde_json::Value>,
            ) -> Result<Self, ::serde_json::Error> {
                match tag {
                    $( $tag => {
                        map.shift_remove("type");
                        $crate::macros::parse_body(map, $what, $tag).map($name::$variant)
                    } )*
                    _ => Ok($name::Other(::serde_json::Value::Object(map))),
                }
            }
        }
    };

    (@serde $name:ident $what:literal { $( $(#[$vmeta:meta])* $tag:literal => $variant:ident($ty:ty), )* }) => {
        impl $name {
            /// Parses one JSON object. Unknown or missing `type` gives `Other`.
            pub fn from_value(value: ::serde_json::Value) -> Result<Self, ::serde_json::Error> {
                let map = $crate::macros::into_object(value, $what)?;
                match map.get("type").and_then(::serde_json::Value::as_str) {
                    Some(tag) => {
                        let tag = tag.to_owned();
                        Self::from_tagged_body(&tag, map)
                    }
                    None => Ok($name::Other(::serde_json::Value::Object(map))),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( $name::$variant(body) => $crate::macros::serialize_tagged($tag, body, s), )*
                    $name::Other(v) => ::serde::Serialize::serialize(v, s),
                }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = <::serde_json::Value as ::serde::Deserialize>::deserialize(d)?;
                $name::from_value(value).map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }
    };
}

/// Unwraps a JSON object or reports what was expected.
pub(crate) fn into_object(
    value: Value,
    what: &str,
) -> Result<Map<String, Value>, serde_json::Error> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(serde_json::Error::custom(format!(
            "expected a JSON object for {what}, found {}",
            json_kind(&other)
        ))),
    }
}

/// Deserializes the body of a tagged object, naming the union and tag in the error.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    map: Map<String, Value>,
    what: &str,
    tag: &str,
) -> Result<T, serde_json::Error> {
    serde_json::from_value(Value::Object(map))
        .map_err(|e| serde_json::Error::custom(format!("invalid {what} `{tag}`: {e}")))
}

/// Serializes `body` as an object whose first key is `"type": tag`.
pub(crate) fn serialize_tagged<S: Serializer, T: Serialize>(
    tag: &str,
    body: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Tagged<'a, T> {
        #[serde(rename = "type")]
        tag: &'a str,
        #[serde(flatten)]
        body: &'a T,
    }
    Tagged { tag, body }.serialize(serializer)
}

/// A short name for the kind of a JSON value, for error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
