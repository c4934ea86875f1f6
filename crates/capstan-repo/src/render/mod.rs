//! Renderers: turn the files of a source into Kubernetes manifests.
//!
//! Each renderer is a pure function over files already read from the object database
//! ([`crate::tree::read_dir`]), so the service layer can run it on a CPU pool and cache its
//! output by commit. Only the plain [`directory`] source exists so far; Helm, Kustomize,
//! Jsonnet and plugins come later.

pub mod directory;
