//! Typed `NetworkDriver.*` calls.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{Client, ClientError, interpret};
use crate::network::{
    AllocateNetworkRequest, AllocateNetworkResponse, Capabilities, CreateEndpointRequest,
    CreateEndpointResponse, CreateNetworkRequest, DeleteNetworkRequest, DiscoveryNotification,
    Empty, EndpointInfoResponse, EndpointInterface, EndpointRequest, FreeNetworkRequest,
    GwAllocCheckRequest, GwAllocCheckResponse, JoinRequest, JoinResponse, Options,
    ProgramExternalConnectivityRequest,
};

/// `NetworkDriver.*` calls with typed arguments and answers.
#[derive(Debug, Clone, Copy)]
pub struct NetworkClient<'a> {
    client: &'a Client,
}

impl<'a> NetworkClient<'a> {
    pub(super) fn new(client: &'a Client) -> Self {
        Self { client }
    }

    /// `NetworkDriver.GetCapabilities`, with the daemon's empty body.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn capabilities(&self) -> Result<Capabilities, ClientError> {
        let endpoint = "NetworkDriver.GetCapabilities";
        let raw = self.client.call_raw(endpoint, Bytes::new()).await?;
        interpret(endpoint, raw)
    }

    /// `NetworkDriver.CreateNetwork`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn create_network(&self, req: &CreateNetworkRequest) -> Result<(), ClientError> {
        self.empty("NetworkDriver.CreateNetwork", req).await
    }

    /// `NetworkDriver.AllocateNetwork`; returns the driver's options.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn allocate_network(
        &self,
        req: &AllocateNetworkRequest,
    ) -> Result<BTreeMap<String, String>, ClientError> {
        let endpoint = "NetworkDriver.AllocateNetwork";
        let res: AllocateNetworkResponse = self.client.call(endpoint, req).await?;
        Ok(res.options)
    }

    /// `NetworkDriver.FreeNetwork`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn free_network(&self, network_id: &str) -> Result<(), ClientError> {
        let req = FreeNetworkRequest {
            network_id: network_id.to_owned(),
        };
        self.empty("NetworkDriver.FreeNetwork", &req).await
    }

    /// `NetworkDriver.DeleteNetwork`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn delete_network(&self, network_id: &str) -> Result<(), ClientError> {
        let req = DeleteNetworkRequest {
            network_id: network_id.to_owned(),
        };
        self.empty("NetworkDriver.DeleteNetwork", &req).await
    }

    /// `NetworkDriver.CreateEndpoint`; returns the fields the driver filled
    /// in, `None` when it filled none.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn create_endpoint(
        &self,
        req: &CreateEndpointRequest,
    ) -> Result<Option<EndpointInterface>, ClientError> {
        let endpoint = "NetworkDriver.CreateEndpoint";
        let res: CreateEndpointResponse = self.client.call(endpoint, req).await?;
        Ok(res.interface)
    }

    /// `NetworkDriver.EndpointOperInfo`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn endpoint_oper_info(
        &self,
        network_id: &str,
        endpoint_id: &str,
    ) -> Result<Options, ClientError> {
        let req = endpoint_request(network_id, endpoint_id);
        let endpoint = "NetworkDriver.EndpointOperInfo";
        let res: EndpointInfoResponse = self.client.call(endpoint, &req).await?;
        Ok(res.value)
    }

    /// `NetworkDriver.DeleteEndpoint`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn delete_endpoint(
        &self,
        network_id: &str,
        endpoint_id: &str,
    ) -> Result<(), ClientError> {
        let req = endpoint_request(network_id, endpoint_id);
        self.empty("NetworkDriver.DeleteEndpoint", &req).await
    }

    /// `NetworkDriver.Join`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn join(&self, req: &JoinRequest) -> Result<JoinResponse, ClientError> {
        self.client.call("NetworkDriver.Join", req).await
    }

    /// `NetworkDriver.Leave`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn leave(&self, network_id: &str, endpoint_id: &str) -> Result<(), ClientError> {
        let req = endpoint_request(network_id, endpoint_id);
        self.empty("NetworkDriver.Leave", &req).await
    }

    /// `NetworkDriver.DiscoverNew`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn discover_new(&self, req: &DiscoveryNotification) -> Result<(), ClientError> {
        self.empty("NetworkDriver.DiscoverNew", req).await
    }

    /// `NetworkDriver.DiscoverDelete`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn discover_delete(&self, req: &DiscoveryNotification) -> Result<(), ClientError> {
        self.empty("NetworkDriver.DiscoverDelete", req).await
    }

    /// `NetworkDriver.ProgramExternalConnectivity`; a 404 counts as success,
    /// as it does for the daemon.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`], except for 404.
    pub async fn program_external_connectivity(
        &self,
        req: &ProgramExternalConnectivityRequest,
    ) -> Result<(), ClientError> {
        self.optional("NetworkDriver.ProgramExternalConnectivity", req)
            .await
    }

    /// `NetworkDriver.RevokeExternalConnectivity`; a 404 counts as success,
    /// as it does for the daemon.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`], except for 404.
    pub async fn revoke_external_connectivity(
        &self,
        network_id: &str,
        endpoint_id: &str,
    ) -> Result<(), ClientError> {
        let req = endpoint_request(network_id, endpoint_id);
        self.optional("NetworkDriver.RevokeExternalConnectivity", &req)
            .await
    }

    /// `NetworkDriver.GwAllocCheck`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn gw_alloc_check(
        &self,
        options: BTreeMap<String, String>,
    ) -> Result<GwAllocCheckResponse, ClientError> {
        let req = GwAllocCheckRequest { options };
        self.client.call("NetworkDriver.GwAllocCheck", &req).await
    }

    async fn empty<Req: serde::Serialize>(
        &self,
        endpoint: &str,
        req: &Req,
    ) -> Result<(), ClientError> {
        self.client.call::<_, Empty>(endpoint, req).await.map(drop)
    }

    /// The two calls the daemon may find missing: a 404 is success.
    async fn optional<Req: serde::Serialize>(
        &self,
        endpoint: &str,
        req: &Req,
    ) -> Result<(), ClientError> {
        match self.empty(endpoint, req).await {
            Err(ClientError::Plugin { status: 404, .. }) => Ok(()),
            other => other,
        }
    }
}

fn endpoint_request(network_id: &str, endpoint_id: &str) -> EndpointRequest {
    EndpointRequest {
        network_id: network_id.to_owned(),
        endpoint_id: endpoint_id.to_owned(),
    }
}
