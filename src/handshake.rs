//! The activation handshake (`/Plugin.Activate`) and the constants every
//! plugin kind shares.

use serde::{Deserialize, Serialize};

/// The handshake endpoint.
pub const ACTIVATE: &str = "Plugin.Activate";

/// The media type the daemon asks for and the SDK answers with.
pub const MEDIA_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// Directory the daemon scans for plugin sockets.
pub const PLUGIN_SOCKET_DIR: &str = "/run/docker/plugins";

/// The answer to `/Plugin.Activate`: the kinds this plugin serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateResponse {
    /// Kind names with the daemon's exact spelling, e.g. `VolumeDriver`.
    #[serde(rename = "Implements", default)]
    pub implements: Vec<String>,
}
