//! Small serde helpers shared by the model types.

/// `skip_serializing_if` helper: Go's `omitempty` for booleans.
pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

/// `skip_serializing_if` helper: Go's `omitempty` for integers.
pub(crate) fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// `skip_serializing_if` helper: omit a nested struct that holds only defaults.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Defines a string-valued enum with exact wire spellings, `as_str`, `FromStr`, `Display`,
/// and serde impls whose error names the accepted values (so the parser can suggest the
/// closest one).
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const VARIANTS: &'static [&'static str] = &[$($text),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::util::UnknownValue;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::util::UnknownValue {
                        value: text.to_owned(),
                        expected: Self::VARIANTS,
                    }),
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
                let text = <String as ::serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(|_| {
                    <D::Error as ::serde::de::Error>::unknown_variant(&text, Self::VARIANTS)
                })
            }
        }
    };
}
pub(crate) use string_enum;

/// A string that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown value {value:?}; expected one of {}",
    crate::suggest::quoted_list(expected)
)]
pub struct UnknownValue {
    /// The text that was given.
    pub value: String,
    /// The accepted spellings.
    pub expected: &'static [&'static str],
}

/// Serde helpers for `Option<E>` where `E` is a [`string_enum!`] and Argo CD writes the
/// empty string for "unset" (Go's zero value of a string enum).
pub(crate) mod empty_as_none {
    use serde::{Deserialize, Deserializer, de::Error};
    use std::str::FromStr;

    pub(crate) fn deserialize<'de, D, E>(d: D) -> Result<Option<E>, D::Error>
    where
        D: Deserializer<'de>,
        E: FromStr<Err = crate::util::UnknownValue>,
    {
        let text = Option::<String>::deserialize(d)?;
        match text.as_deref() {
            None | Some("") => Ok(None),
            Some(t) => t
                .parse()
                .map(Some)
                .map_err(|e: crate::util::UnknownValue| D::Error::unknown_variant(t, e.expected)),
        }
    }
}
