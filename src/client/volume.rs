//! Typed `VolumeDriver.*` calls.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Client, ClientError};
use crate::volume::{
    Capabilities, CapabilitiesResponse, CreateRequest, Empty, GetRequest, ListResponse,
    MountRequest, MountResponse, PathRequest, PathResponse, RemoveRequest, UnmountRequest, Volume,
};

/// `VolumeDriver.*` calls with typed arguments and answers.
#[derive(Debug, Clone, Copy)]
pub struct VolumeClient<'a> {
    client: &'a Client,
}

impl<'a> VolumeClient<'a> {
    pub(super) fn new(client: &'a Client) -> Self {
        Self { client }
    }

    /// `VolumeDriver.Create`. `opts: None` sends `"Opts":null`, as
    /// `docker run -v` does; `Some` of an empty map sends `{}`, as
    /// `docker volume create` without `--opt` does.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn create(
        &self,
        name: &str,
        opts: Option<BTreeMap<String, String>>,
    ) -> Result<(), ClientError> {
        let req = CreateRequest {
            name: name.to_owned(),
            opts,
        };
        self.client
            .call::<_, Empty>("VolumeDriver.Create", &req)
            .await
            .map(drop)
    }

    /// `VolumeDriver.Remove`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn remove(&self, name: &str) -> Result<(), ClientError> {
        let req = RemoveRequest {
            name: name.to_owned(),
        };
        self.client
            .call::<_, Empty>("VolumeDriver.Remove", &req)
            .await
            .map(drop)
    }

    /// `VolumeDriver.Mount`; returns the mountpoint.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn mount(&self, name: &str, id: &str) -> Result<PathBuf, ClientError> {
        let req = MountRequest {
            name: name.to_owned(),
            id: id.to_owned(),
        };
        let res: MountResponse = self.client.call("VolumeDriver.Mount", &req).await?;
        Ok(res.mountpoint)
    }

    /// `VolumeDriver.Unmount`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn unmount(&self, name: &str, id: &str) -> Result<(), ClientError> {
        let req = UnmountRequest {
            name: name.to_owned(),
            id: id.to_owned(),
        };
        self.client
            .call::<_, Empty>("VolumeDriver.Unmount", &req)
            .await
            .map(drop)
    }

    /// `VolumeDriver.Path`; `None` when the plugin reports no path.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn path(&self, name: &str) -> Result<Option<PathBuf>, ClientError> {
        let req = PathRequest {
            name: name.to_owned(),
        };
        let res: PathResponse = self.client.call("VolumeDriver.Path", &req).await?;
        Ok(res.mountpoint)
    }

    /// `VolumeDriver.Get`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`]; a missing volume is a [`ClientError::Plugin`].
    pub async fn get(&self, name: &str) -> Result<Volume, ClientError> {
        let req = GetRequest {
            name: name.to_owned(),
        };
        // The daemon takes `"Volume": null` as "no such volume", so this
        // client does too.
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(rename = "Volume", default)]
            volume: Option<Volume>,
        }
        let res: Answer = self.client.call("VolumeDriver.Get", &req).await?;
        res.volume.ok_or_else(|| ClientError::Plugin {
            endpoint: "VolumeDriver.Get".to_owned(),
            status: 200,
            message: format!("no such volume {name:?} (the plugin answered a null Volume)"),
        })
    }

    /// `VolumeDriver.List`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn list(&self) -> Result<Vec<Volume>, ClientError> {
        let res: ListResponse = self.client.call("VolumeDriver.List", &Empty {}).await?;
        Ok(res.volumes)
    }

    /// `VolumeDriver.Capabilities`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn capabilities(&self) -> Result<Capabilities, ClientError> {
        let res: CapabilitiesResponse = self
            .client
            .call("VolumeDriver.Capabilities", &Empty {})
            .await?;
        Ok(res.capabilities)
    }
}
