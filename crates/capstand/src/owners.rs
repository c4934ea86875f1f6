//! Which controller member answers for an Application: the owner of its destination cluster
//! (its ownership key in etcd) and the live-state address that member published in its
//! membership record. What `capstand api` forwards the live-state methods with.

use std::sync::Arc;

use capstan_api::error::{ApiError, Code};
use capstan_api::live::LiveFuture;
use capstan_api::remote_live::OwnerLocator;
use capstan_controller::sharding::MemberInfo;
use capstan_controller::sharding::membership::member_key;
use capstan_controller::sharding::shard::owner_key;
use capstan_model::Application;
use capstan_store::kinds::Clusters;
use capstan_store::typed::TypedStore;
use capstan_store::{EtcdStore, Store};

/// Finds owners in etcd (see the [module docs](self)).
#[derive(Debug)]
pub struct ShardOwners {
    /// The control plane's store (Clusters are sealed: read through it).
    pub store: Arc<dyn Store>,
    /// The same etcd, for the ownership and member keys.
    pub etcd: EtcdStore,
}

impl ShardOwners {
    async fn locate(&self, app: &Application) -> Result<Option<String>, ApiError> {
        let destination = &app.spec.destination;
        let server = if destination.server.is_empty() {
            let clusters = TypedStore::<Clusters>::new(self.store.clone())
                .list(None)
                .await?;
            let found = clusters
                .items
                .into_iter()
                .find(|c| c.spec.value.display_name() == destination.name);
            match found {
                Some(cluster) => cluster.spec.value.spec.server.trim().to_owned(),
                None => {
                    return Err(ApiError::new(
                        Code::FailedPrecondition,
                        format!(
                            "the destination cluster {:?} is not registered",
                            destination.name
                        ),
                    ));
                }
            }
        } else {
            destination.server.clone()
        };
        let Some(owner) = self.etcd.get(owner_key(&server).as_bytes()).await? else {
            return Ok(None);
        };
        let name = String::from_utf8_lossy(&owner.value).into_owned();
        let Some(member) = self.etcd.get(member_key(&name).as_bytes()).await? else {
            return Ok(None);
        };
        let info: MemberInfo = serde_json::from_slice(&member.value).map_err(|error| {
            ApiError::internal(format!(
                "the membership record of {name:?} is unreadable: {error}"
            ))
        })?;
        match info.live_url {
            Some(url) => Ok(Some(url)),
            None => Err(ApiError::new(
                Code::Unavailable,
                format!(
                    "controller member {name:?} owns the cluster {server} but serves no live state (--live-listen)"
                ),
            )),
        }
    }
}

impl OwnerLocator for ShardOwners {
    fn owner_of<'a>(&'a self, app: &'a Application) -> LiveFuture<'a, Option<String>> {
        Box::pin(self.locate(app))
    }
}
