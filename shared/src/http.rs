//! The one JSON error body both services answer with, so that a client (the CLI, the console,
//! a script) reads every refusal the same way: a machine-readable code, a sentence for people,
//! and, for bad input, each field at fault with what is allowed.

use serde::{Deserialize, Serialize};

use crate::config::FieldError;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `invalid`, `not_found`, `conflict`, `too_large` (413), `unsupported_media_type` (415),
    /// `unavailable`, …
    pub error: String,
    pub message: String,
    /// For `invalid`: every field at fault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<FieldError>,
}
