//! The domain kinds as the typed layer stores them: one [`Resource`] per kind of
//! `capstan-model`, so every component (controller, API) reads and writes them the same way.
//!
//! An Application's spec key holds the whole object as users write it (metadata, `spec` and
//! `operation`, Argo CD's shape) with no `status`; the status key holds its
//! [`ApplicationStatus`], written only by the controller that owns its cluster.

use capstan_model::{AppProject, Application, ApplicationStatus, Cluster, Repository};

use crate::typed::Resource;

/// `applications`: spec = the [`Application`] without status, status = [`ApplicationStatus`].
#[derive(Debug, Clone, Copy)]
pub struct Applications;

impl Resource for Applications {
    const KIND: &'static str = "applications";
    type Spec = Application;
    type Status = ApplicationStatus;
}

/// `appprojects`: the [`AppProject`]; no status.
#[derive(Debug, Clone, Copy)]
pub struct AppProjects;

impl Resource for AppProjects {
    const KIND: &'static str = "appprojects";
    type Spec = AppProject;
    type Status = ();
}

/// `clusters`: the [`Cluster`] (credentials included, encrypted at rest by the API tier);
/// status: the controller's connection state ([`capstan_model::ClusterStatus`]).
#[derive(Debug, Clone, Copy)]
pub struct Clusters;

impl Resource for Clusters {
    const KIND: &'static str = "clusters";
    type Spec = Cluster;
    type Status = capstan_model::ClusterStatus;
}

/// `repositories`: the [`Repository`] (credentials included); no status.
#[derive(Debug, Clone, Copy)]
pub struct Repositories;

impl Resource for Repositories {
    const KIND: &'static str = "repositories";
    type Spec = Repository;
    type Status = ();
}
