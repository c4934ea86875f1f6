//! The in-memory index of one cluster: compact objects by uid, a name index per kind, the
//! owner → children index, and app → tracked objects.
//!
//! It is a plain data structure, driven by the watch tasks through `Store::apply`,
//! `Store::remove`, `Store::replace_scope` (a relist) and `Store::remove_kind`, each of
//! which returns the apps whose resources changed. Unit tests drive it directly.
//!
//! Memory is accounted as it is used: `Store::stats` adds the heap bytes every entry owns
//! (kept as a running sum) to the size of every table computed from its capacity, so the
//! figure follows what is actually allocated, not a per-object guess.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::mem::size_of;
use std::sync::Arc;

use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::health::{HealthStatusCode, HealthVerdict};
use crate::resources::ResourceKey;

use super::object::{CompactObject, Uid};

/// An API group and kind: what the cache watches, independent of version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKind {
    /// API group, empty for the core group.
    pub group: String,
    /// Kind.
    pub kind: String,
}

impl GroupKind {
    /// A group and kind.
    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
        }
    }
}

impl fmt::Display for GroupKind {
    /// `group/Kind`, or `Kind` for the core group (the form of Argo CD's patterns).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}/{}", self.group, self.kind)
        }
    }
}

/// One object of an app's resource tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TreeNode {
    /// Group, kind, namespace, name.
    pub key: ResourceKey,
    /// The version the cache watches the kind at.
    pub version: String,
    /// The object's uid.
    pub uid: String,
    /// The object's resourceVersion.
    pub resource_version: String,
    /// Uids of the owners (ownerReferences); empty for the app's own resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// Health, for kinds with a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthVerdict>,
    /// The app, for the objects an app tracks itself (the tree's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

/// The cache's own account of what it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    /// Objects held.
    pub objects: usize,
    /// Bytes held: entries, their strings and bodies, and every index table (by capacity).
    pub bytes: usize,
    /// Of which serialised bodies.
    pub body_bytes: usize,
    /// Objects whose body is kept.
    pub bodies: usize,
    /// Objects an app tracks (tree roots).
    pub tracked: usize,
    /// Apps with at least one tracked object.
    pub apps: usize,
    /// Kinds watched.
    pub kinds: usize,
    /// Kinds whose initial list completed.
    pub synced_kinds: usize,
    /// Watch events applied since start.
    pub events: u64,
    /// Relists after the first list (410 Gone, restarts, invalidation).
    pub relists: u64,
    /// Watch errors (each is retried with backoff).
    pub watch_errors: u64,
    /// Discovery runs.
    pub discoveries: u64,
}

impl CacheStats {
    /// `bytes / objects` (0 when empty).
    pub fn bytes_per_object(&self) -> f64 {
        if self.objects == 0 {
            0.0
        } else {
            self.bytes as f64 / self.objects as f64
        }
    }
}

/// The state of one watched kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KindStatus {
    /// Group and kind.
    pub group_kind: GroupKind,
    /// The version watched.
    pub version: String,
    /// The plural resource name.
    pub plural: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Objects held.
    pub objects: usize,
    /// Whether the initial list of every watch of the kind completed.
    pub synced: bool,
    /// Events applied.
    pub events: u64,
    /// The last watch error, cleared by the next successful list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Apps touched by a change.
pub(crate) type Touched = BTreeSet<Arc<str>>;

/// Size of an `Arc<str>` allocation beyond its text (strong and weak counts).
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// Bytes of a hashbrown table of `capacity` slots of `slot` bytes: the slots plus one
/// control byte each (plus a group of trailing control bytes we leave out).
fn table_bytes(buckets: usize, slot: usize) -> usize {
    buckets * (slot + 1)
}

/// Buckets a std `HashMap` allocates for a reported `capacity` (7/8 load factor, power of
/// two, at least 4).
fn buckets(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else if capacity < 4 {
        4
    } else if capacity < 8 {
        8
    } else {
        (capacity * 8 / 7).next_power_of_two()
    }
}

struct Entry {
    kind: Arc<GroupKind>,
    namespace: Arc<str>,
    name: Arc<str>,
    resource_version: Box<str>,
    owners: Box<[Uid]>,
    app: Option<Arc<str>>,
    health: Option<(HealthStatusCode, Box<str>)>,
    body: Option<Box<[u8]>>,
}

impl Entry {
    /// Heap bytes this entry owns. The name's allocation is shared with the name index and
    /// counted here once; namespaces and app names are interned and counted by the store.
    fn heap_bytes(&self) -> usize {
        ARC_HEADER
            + self.name.len()
            + self.resource_version.len()
            + self.owners.len() * size_of::<Uid>()
            + self.health.as_ref().map_or(0, |(_, m)| m.len())
            + self.body.as_ref().map_or(0, |b| b.len())
    }

    fn key(&self) -> ResourceKey {
        ResourceKey {
            group: self.kind.group.clone(),
            kind: self.kind.kind.clone(),
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
        }
    }

    fn health(&self) -> Option<HealthVerdict> {
        self.health
            .as_ref()
            .map(|(status, message)| HealthVerdict::new(*status, message.as_ref()))
    }
}

struct KindIndex {
    kind: Arc<GroupKind>,
    resource: ApiResource,
    namespaced: bool,
    /// namespace → name → uid; nested so lookups take `&str` and a namespace's objects can
    /// be swept without scanning the kind.
    names: HashMap<Arc<str>, HashMap<Arc<str>, Uid>>,
    objects: usize,
    events: u64,
    /// Watch scopes (`""` = all namespaces) and whether each finished its initial list.
    scopes: HashMap<String, bool>,
    last_error: Option<String>,
}

/// The index. See the [module docs](self).
#[derive(Default)]
pub(crate) struct Store {
    objects: HashMap<Uid, Entry>,
    kinds: HashMap<GroupKind, KindIndex>,
    children: HashMap<Uid, Vec<Uid>>,
    managed: HashMap<Arc<str>, HashSet<Uid>>,
    namespaces: HashSet<Arc<str>>,
    /// Running sum of [`Entry::heap_bytes`].
    entry_bytes: usize,
    /// Running sum of the children vectors' capacities, in uids.
    child_slots: usize,
    body_bytes: usize,
    bodies: usize,
    events: u64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("objects", &self.objects.len())
            .field("kinds", &self.kinds.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Declares a watched kind and its watch scopes (`""` for all namespaces); keeps what
    /// it holds if already known.
    pub fn add_kind(&mut self, resource: &ApiResource, namespaced: bool, scopes: &[String]) {
        let gk = GroupKind::new(&resource.group, &resource.kind);
        let index = self.kinds.entry(gk.clone()).or_insert_with(|| KindIndex {
            kind: Arc::new(gk),
            resource: resource.clone(),
            namespaced,
            names: HashMap::new(),
            objects: 0,
            events: 0,
            scopes: HashMap::new(),
            last_error: None,
        });
        index.resource = resource.clone();
        index.namespaced = namespaced;
        for scope in scopes {
            index.scopes.entry(scope.clone()).or_insert(false);
        }
    }

    /// Where a kind is served and whether it is namespaced.
    pub fn resource(&self, kind: &GroupKind) -> Option<(ApiResource, bool)> {
        self.kinds
            .get(kind)
            .map(|k| (k.resource.clone(), k.namespaced))
    }

    /// Records a watch error for `kind` (shown by [`Self::kinds`]).
    pub fn set_error(&mut self, kind: &GroupKind, error: Option<String>) {
        if let Some(k) = self.kinds.get_mut(kind) {
            k.last_error = error;
        }
    }

    /// Whether the watch of `kind` in `scope` has completed a list before (so the next
    /// list is a relist).
    pub fn scope_synced(&self, kind: &GroupKind, scope: &str) -> bool {
        self.kinds
            .get(kind)
            .and_then(|k| k.scopes.get(scope))
            .copied()
            .unwrap_or(false)
    }

    /// Whether every scope of every kind finished its initial list.
    pub fn is_synced(&self) -> bool {
        self.kinds.values().all(|k| k.scopes.values().all(|s| *s))
    }

    /// Kinds not synced yet, with their last error.
    pub fn unsynced(&self) -> Vec<(GroupKind, Option<String>)> {
        let mut out: Vec<_> = self
            .kinds
            .values()
            .filter(|k| !k.scopes.values().all(|s| *s))
            .map(|k| ((*k.kind).clone(), k.last_error.clone()))
            .collect();
        out.sort();
        out
    }

    fn intern_namespace(&mut self, ns: &str) -> Arc<str> {
        if let Some(found) = self.namespaces.get(ns) {
            return found.clone();
        }
        let ns: Arc<str> = Arc::from(ns);
        self.namespaces.insert(ns.clone());
        ns
    }

    fn intern_app(&mut self, app: &str) -> Arc<str> {
        match self.managed.get_key_value(app) {
            Some((name, _)) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(app);
                self.managed.insert(name.clone(), HashSet::new());
                name
            }
        }
    }

    fn uid_of(&self, kind: &GroupKind, namespace: &str, name: &str) -> Option<Uid> {
        self.kinds
            .get(kind)?
            .names
            .get(namespace)?
            .get(name)
            .copied()
    }

    /// The apps an object belongs to: its own, or those of the roots its owner chain
    /// reaches. Cycles and dangling owners end the walk.
    fn apps_of(&self, uid: Uid, into: &mut Touched) {
        let mut stack = vec![uid];
        let mut seen = HashSet::new();
        while let Some(u) = stack.pop() {
            if !seen.insert(u) {
                continue;
            }
            let Some(entry) = self.objects.get(&u) else {
                continue;
            };
            match &entry.app {
                Some(app) => {
                    into.insert(app.clone());
                }
                None => stack.extend(entry.owners.iter().copied()),
            }
        }
    }

    /// Adds or replaces an object of `kind`, returning the apps touched. An unchanged
    /// resourceVersion is a no-op (relists deliver every object again).
    pub fn apply(&mut self, kind: &GroupKind, obj: CompactObject) -> Touched {
        let mut touched = Touched::new();
        if let Some(k) = self.kinds.get_mut(kind) {
            k.events += 1;
        }
        self.events += 1;
        if let Some(old) = self.uid_of(kind, &obj.namespace, &obj.name) {
            let unchanged = old == obj.uid
                && self
                    .objects
                    .get(&old)
                    .is_some_and(|e| *e.resource_version == *obj.resource_version);
            if unchanged {
                return touched;
            }
            self.remove_uid(old, &mut touched);
        } else if self.objects.contains_key(&obj.uid) {
            // The same uid under another name cannot happen; under another kind it means the
            // kind is served twice (an alias group). Keep the first to stay consistent.
            return touched;
        }
        let Some(index) = self.kinds.get(kind) else {
            return touched;
        };
        let kind_arc = index.kind.clone();
        let namespace = self.intern_namespace(&obj.namespace);
        let name: Arc<str> = Arc::from(obj.name.as_str());
        let app = obj.app.as_deref().map(|a| self.intern_app(a));
        let entry = Entry {
            kind: kind_arc,
            namespace: namespace.clone(),
            name: name.clone(),
            resource_version: obj.resource_version.into_boxed_str(),
            owners: obj.owners.into_boxed_slice(),
            app: app.clone(),
            health: obj.health.map(|v| (v.status, v.message.into_boxed_str())),
            body: obj.body.map(Vec::into_boxed_slice),
        };
        let uid = obj.uid;
        self.entry_bytes += entry.heap_bytes();
        if let Some(body) = &entry.body {
            self.body_bytes += body.len();
            self.bodies += 1;
        }
        for owner in entry.owners.iter() {
            let children = self.children.entry(*owner).or_default();
            let before = children.capacity();
            children.push(uid);
            self.child_slots += children.capacity() - before;
        }
        if let Some(app) = &app
            && let Some(set) = self.managed.get_mut(app)
        {
            set.insert(uid);
        }
        self.objects.insert(uid, entry);
        if let Some(index) = self.kinds.get_mut(kind) {
            index.names.entry(namespace).or_default().insert(name, uid);
            index.objects += 1;
        }
        self.apps_of(uid, &mut touched);
        touched
    }

    /// Removes the object `namespace/name` of `kind`, returning the apps touched.
    pub fn remove(&mut self, kind: &GroupKind, namespace: &str, name: &str) -> Touched {
        let mut touched = Touched::new();
        if let Some(k) = self.kinds.get_mut(kind) {
            k.events += 1;
        }
        self.events += 1;
        if let Some(uid) = self.uid_of(kind, namespace, name) {
            self.remove_uid(uid, &mut touched);
        }
        touched
    }

    fn remove_uid(&mut self, uid: Uid, touched: &mut Touched) {
        // The apps are read before the entry goes: afterwards the chain is broken.
        self.apps_of(uid, touched);
        let Some(entry) = self.objects.remove(&uid) else {
            return;
        };
        self.entry_bytes -= entry.heap_bytes();
        if let Some(body) = &entry.body {
            self.body_bytes -= body.len();
            self.bodies -= 1;
        }
        for owner in entry.owners.iter() {
            if let Some(children) = self.children.get_mut(owner) {
                let before = children.capacity();
                children.retain(|c| *c != uid);
                if children.is_empty() {
                    self.child_slots -= before;
                    self.children.remove(owner);
                } else {
                    children.shrink_to_fit();
                    self.child_slots -= before - children.capacity();
                }
            }
        }
        if let Some(app) = &entry.app
            && let Some(set) = self.managed.get_mut(app)
        {
            set.remove(&uid);
            if set.is_empty() {
                self.managed.remove(app);
            }
        }
        if let Some(index) = self.kinds.get_mut(&*entry.kind) {
            if let Some(names) = index.names.get_mut(&*entry.namespace) {
                names.remove(&*entry.name);
                if names.is_empty() {
                    index.names.remove(&*entry.namespace);
                }
            }
            index.objects -= 1;
        }
        let namespace = entry.namespace.clone();
        drop(entry);
        // Only the interner holds it now: no object lives in that namespace any more.
        if Arc::strong_count(&namespace) == 2 {
            self.namespaces.remove(&namespace);
        }
    }

    /// Replaces what the cache holds of `kind` in `scope` (a namespace, or `""` for all)
    /// with the result of a complete list: objects not listed are removed (they were
    /// deleted while no watch was running), listed ones are applied. Marks the scope synced.
    pub fn replace_scope(
        &mut self,
        kind: &GroupKind,
        scope: &str,
        listed: Vec<CompactObject>,
    ) -> Touched {
        let mut touched = Touched::new();
        let listed_names: HashSet<(&str, &str)> = listed
            .iter()
            .map(|o| (o.namespace.as_str(), o.name.as_str()))
            .collect();
        let mut gone: Vec<Uid> = Vec::new();
        if let Some(index) = self.kinds.get(kind) {
            for (ns, names) in &index.names {
                if !scope.is_empty() && **ns != *scope {
                    continue;
                }
                for (name, uid) in names {
                    if !listed_names.contains(&(&**ns, &**name)) {
                        gone.push(*uid);
                    }
                }
            }
        }
        drop(listed_names);
        for uid in gone {
            self.remove_uid(uid, &mut touched);
        }
        for obj in listed {
            touched.extend(self.apply(kind, obj));
        }
        if let Some(index) = self.kinds.get_mut(kind) {
            index.scopes.insert(scope.to_owned(), true);
            index.last_error = None;
        }
        touched
    }

    /// Forgets a kind the server no longer serves, returning the apps touched.
    pub fn remove_kind(&mut self, kind: &GroupKind) -> Touched {
        let mut touched = Touched::new();
        let uids: Vec<Uid> = self
            .kinds
            .get(kind)
            .map(|k| k.names.values().flat_map(|n| n.values().copied()).collect())
            .unwrap_or_default();
        for uid in uids {
            self.remove_uid(uid, &mut touched);
        }
        self.kinds.remove(kind);
        touched
    }

    /// The body of an object, if the cache keeps it.
    pub fn get(&self, key: &ResourceKey) -> Option<Value> {
        let uid = self.uid_of(
            &GroupKind::new(&key.group, &key.kind),
            &key.namespace,
            &key.name,
        )?;
        let body = self.objects.get(&uid)?.body.as_ref()?;
        serde_json::from_slice(body).ok()
    }

    /// Whether the cache knows the object.
    pub fn contains(&self, key: &ResourceKey) -> bool {
        self.uid_of(
            &GroupKind::new(&key.group, &key.kind),
            &key.namespace,
            &key.name,
        )
        .is_some()
    }

    /// The object's tree node, if known.
    pub fn node(&self, key: &ResourceKey) -> Option<TreeNode> {
        let uid = self.uid_of(
            &GroupKind::new(&key.group, &key.kind),
            &key.namespace,
            &key.name,
        )?;
        self.tree_node(uid)
    }

    /// The apps an object belongs to (its own, or its owners').
    pub fn apps_of_key(&self, key: &ResourceKey) -> Vec<String> {
        let mut apps = Touched::new();
        if let Some(uid) = self.uid_of(
            &GroupKind::new(&key.group, &key.kind),
            &key.namespace,
            &key.name,
        ) {
            self.apps_of(uid, &mut apps);
        }
        apps.iter().map(|a| a.to_string()).collect()
    }

    /// The objects `app` tracks, sorted.
    pub fn managed_by(&self, app: &str) -> Vec<ResourceKey> {
        let mut keys: Vec<ResourceKey> = self
            .managed
            .get(app)
            .map(|uids| {
                uids.iter()
                    .filter_map(|u| self.objects.get(u))
                    .map(Entry::key)
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// Apps with at least one tracked object, sorted.
    pub fn apps(&self) -> Vec<String> {
        let mut apps: Vec<String> = self.managed.keys().map(|a| a.to_string()).collect();
        apps.sort();
        apps
    }

    /// The objects whose owner has uid `owner`, sorted.
    pub fn children(&self, owner: Uid) -> Vec<ResourceKey> {
        let mut keys: Vec<ResourceKey> = self
            .children
            .get(&owner)
            .map(|c| {
                c.iter()
                    .filter_map(|u| self.objects.get(u))
                    .map(Entry::key)
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    }

    fn tree_node(&self, uid: Uid) -> Option<TreeNode> {
        let entry = self.objects.get(&uid)?;
        let version = self
            .kinds
            .get(&*entry.kind)
            .map(|k| k.resource.version.clone())
            .unwrap_or_default();
        Some(TreeNode {
            key: entry.key(),
            version,
            uid: uid.to_string(),
            resource_version: entry.resource_version.to_string(),
            parents: entry.owners.iter().map(Uid::to_string).collect(),
            health: entry.health(),
            app: entry.app.as_ref().map(|a| a.to_string()),
        })
    }

    /// `app`'s resource tree: its tracked objects (sorted) and, breadth first, everything
    /// they own, transitively. An object owned by two tree members appears once.
    pub fn tree(&self, app: &str) -> Vec<TreeNode> {
        let mut roots: Vec<(ResourceKey, Uid)> = self
            .managed
            .get(app)
            .map(|uids| {
                uids.iter()
                    .filter_map(|u| self.objects.get(u).map(|e| (e.key(), *u)))
                    .collect()
            })
            .unwrap_or_default();
        roots.sort();
        let mut seen: HashSet<Uid> = roots.iter().map(|(_, u)| *u).collect();
        let mut queue: std::collections::VecDeque<Uid> =
            roots.into_iter().map(|(_, u)| u).collect();
        let mut nodes = Vec::new();
        while let Some(uid) = queue.pop_front() {
            if let Some(node) = self.tree_node(uid) {
                nodes.push(node);
            }
            if let Some(children) = self.children.get(&uid) {
                let mut kids: Vec<(ResourceKey, Uid)> = children
                    .iter()
                    .filter(|c| !seen.contains(c))
                    .filter_map(|c| self.objects.get(c).map(|e| (e.key(), *c)))
                    .collect();
                kids.sort();
                for (_, c) in kids {
                    if seen.insert(c) {
                        queue.push_back(c);
                    }
                }
            }
        }
        nodes
    }

    /// Every watched kind's state, sorted.
    pub fn kinds(&self) -> Vec<KindStatus> {
        let mut out: Vec<KindStatus> = self
            .kinds
            .values()
            .map(|k| KindStatus {
                group_kind: (*k.kind).clone(),
                version: k.resource.version.clone(),
                plural: k.resource.plural.clone(),
                namespaced: k.namespaced,
                objects: k.objects,
                synced: k.scopes.values().all(|s| *s),
                events: k.events,
                last_error: k.last_error.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.group_kind.cmp(&b.group_kind));
        out
    }

    /// The objects of `kind` in `namespace` (`""`: all), as keys, sorted.
    pub fn keys_of_kind(&self, kind: &GroupKind, namespace: &str) -> Vec<ResourceKey> {
        let mut keys: Vec<ResourceKey> = self
            .kinds
            .get(kind)
            .map(|k| {
                k.names
                    .iter()
                    .filter(|(ns, _)| namespace.is_empty() || ***ns == *namespace)
                    .flat_map(|(_, names)| names.values())
                    .filter_map(|u| self.objects.get(u))
                    .map(Entry::key)
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// The cache's account of itself (watch counters are filled in by the caller).
    pub fn stats(&self) -> CacheStats {
        let mut bytes = self.entry_bytes;
        bytes += table_bytes(buckets(self.objects.capacity()), size_of::<(Uid, Entry)>());
        for index in self.kinds.values() {
            bytes += size_of::<(GroupKind, KindIndex)>()
                + index.kind.group.len()
                + index.kind.kind.len()
                + ARC_HEADER;
            bytes += table_bytes(
                buckets(index.names.capacity()),
                size_of::<(Arc<str>, HashMap<Arc<str>, Uid>)>(),
            );
            for names in index.names.values() {
                bytes += table_bytes(buckets(names.capacity()), size_of::<(Arc<str>, Uid)>());
            }
        }
        bytes += table_bytes(
            buckets(self.children.capacity()),
            size_of::<(Uid, Vec<Uid>)>(),
        ) + self.child_slots * size_of::<Uid>();
        bytes += table_bytes(
            buckets(self.managed.capacity()),
            size_of::<(Arc<str>, HashSet<Uid>)>(),
        );
        for (app, uids) in &self.managed {
            bytes += ARC_HEADER + app.len();
            bytes += table_bytes(buckets(uids.capacity()), size_of::<Uid>());
        }
        bytes += table_bytes(buckets(self.namespaces.capacity()), size_of::<Arc<str>>());
        bytes += self
            .namespaces
            .iter()
            .map(|ns| ARC_HEADER + ns.len())
            .sum::<usize>();
        CacheStats {
            objects: self.objects.len(),
            bytes,
            body_bytes: self.body_bytes,
            bodies: self.bodies,
            tracked: self.managed.values().map(HashSet::len).sum(),
            apps: self.managed.len(),
            kinds: self.kinds.len(),
            synced_kinds: self
                .kinds
                .values()
                .filter(|k| k.scopes.values().all(|s| *s))
                .count(),
            events: self.events,
            ..CacheStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::object::{BodyRetention, CompactRules, compact};
    use crate::cache::tracking::{Tracking, TrackingMethod};
    use crate::health::HealthAssessor;
    use serde_json::json;

    fn uid(n: u32) -> String {
        format!("00000000-0000-0000-0000-{n:012}")
    }

    fn obj(
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
        n: u32,
        owners: &[u32],
        tracking_app: Option<&str>,
    ) -> Value {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let mut meta = json!({"name": name, "uid": uid(n), "resourceVersion": "1"});
        if !ns.is_empty() {
            meta["namespace"] = json!(ns);
        }
        if !owners.is_empty() {
            meta["ownerReferences"] = owners.iter().map(|o| json!({"uid": uid(*o)})).collect();
        }
        if let Some(app) = tracking_app {
            meta["annotations"] =
                json!({"capstan.dev/tracking-id": format!("{app}:{group}/{kind}:{ns}/{name}")});
        }
        json!({"apiVersion": api_version, "kind": kind, "metadata": meta})
    }

    struct Fixture {
        store: Store,
        tracking: Tracking,
        health: HealthAssessor,
    }

    impl Fixture {
        fn new() -> Self {
            let mut store = Store::default();
            for (g, v, k, p) in [
                ("apps", "v1", "Deployment", "deployments"),
                ("apps", "v1", "ReplicaSet", "replicasets"),
                ("", "v1", "Pod", "pods"),
                ("", "v1", "ConfigMap", "configmaps"),
            ] {
                let gvk = kube::core::GroupVersionKind::gvk(g, v, k);
                let ar = ApiResource::from_gvk_with_plural(&gvk, p);
                store.add_kind(&ar, true, &[String::new()]);
            }
            Self {
                store,
                tracking: Tracking::new(TrackingMethod::Annotation),
                health: HealthAssessor::builtin_only(),
            }
        }

        fn compact(&self, value: Value) -> CompactObject {
            let api_version = value["apiVersion"].as_str().unwrap_or_default().to_owned();
            let kind = value["kind"].as_str().unwrap_or_default().to_owned();
            let group = api_version
                .rsplit_once('/')
                .map_or("", |(g, _)| g)
                .to_owned();
            compact(
                value,
                &group,
                &api_version,
                &kind,
                CompactRules {
                    tracking: &self.tracking,
                    health: &self.health,
                    retention: BodyRetention::Tracked,
                },
            )
        }

        fn apply(&mut self, value: Value) -> Vec<String> {
            let gk = GroupKind::new(
                value["apiVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .rsplit_once('/')
                    .map_or("", |(g, _)| g),
                value["kind"].as_str().unwrap_or_default(),
            );
            let c = self.compact(value);
            self.store
                .apply(&gk, c)
                .iter()
                .map(|a| a.to_string())
                .collect()
        }
    }

    fn gk(group: &str, kind: &str) -> GroupKind {
        GroupKind::new(group, kind)
    }

    fn names(nodes: &[TreeNode]) -> Vec<String> {
        nodes
            .iter()
            .map(|n| format!("{}/{}", n.key.kind, n.key.name))
            .collect()
    }

    #[test]
    fn ownership_builds_the_tree_whatever_the_arrival_order() {
        let mut f = Fixture::new();
        // Children first (as when Pods are listed before Deployments).
        assert!(
            f.apply(obj("v1", "Pod", "shop", "web-abc-1", 3, &[2], None))
                .is_empty()
        );
        assert!(
            f.apply(obj(
                "apps/v1",
                "ReplicaSet",
                "shop",
                "web-abc",
                2,
                &[1],
                None
            ))
            .is_empty()
        );
        assert_eq!(
            f.apply(obj(
                "apps/v1",
                "Deployment",
                "shop",
                "web",
                1,
                &[],
                Some("guestbook")
            )),
            vec!["guestbook"]
        );
        // A later child event touches the app through the chain.
        assert_eq!(
            f.apply(obj("v1", "Pod", "shop", "web-abc-2", 4, &[2], None)),
            vec!["guestbook"]
        );

        let tree = f.store.tree("guestbook");
        assert_eq!(
            names(&tree),
            [
                "Deployment/web",
                "ReplicaSet/web-abc",
                "Pod/web-abc-1",
                "Pod/web-abc-2"
            ]
        );
        assert_eq!(tree[0].app.as_deref(), Some("guestbook"));
        assert_eq!(tree[1].parents, vec![uid(1)]);
        assert_eq!(f.store.managed_by("guestbook").len(), 1);
        assert_eq!(f.store.children(Uid::parse(&uid(2))).len(), 2);
        let pod = ResourceKey {
            group: String::new(),
            kind: "Pod".into(),
            namespace: "shop".into(),
            name: "web-abc-1".into(),
        };
        assert_eq!(f.store.apps_of_key(&pod), vec!["guestbook"]);
        // Only the tracked object keeps its body.
        assert!(f.store.get(&pod).is_none());
        assert!(f.store.contains(&pod));
        let deploy = ResourceKey {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert_eq!(
            f.store.get(&deploy).expect("kept")["metadata"]["name"],
            "web"
        );

        // Deleting the ReplicaSet cuts the Pods off the tree (they are orphans until
        // the garbage collector removes them) and touches the app.
        let touched = f.store.remove(&gk("apps", "ReplicaSet"), "shop", "web-abc");
        assert_eq!(
            touched.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            vec!["guestbook"]
        );
        assert_eq!(names(&f.store.tree("guestbook")), ["Deployment/web"]);
        assert_eq!(f.store.apps_of_key(&pod), Vec::<String>::new());
    }

    #[test]
    fn tracking_changes_move_objects_between_apps() {
        let mut f = Fixture::new();
        f.apply(obj("v1", "ConfigMap", "shop", "cm", 1, &[], Some("a")));
        assert_eq!(f.store.apps(), vec!["a"]);
        let mut moved = obj("v1", "ConfigMap", "shop", "cm", 1, &[], Some("b"));
        moved["metadata"]["resourceVersion"] = json!("2");
        let touched = f.apply(moved);
        assert_eq!(touched, vec!["a", "b"]);
        assert_eq!(f.store.apps(), vec!["b"]);
        assert!(f.store.managed_by("a").is_empty());

        // Same resourceVersion again (a relist): nothing happens.
        let mut again = obj("v1", "ConfigMap", "shop", "cm", 1, &[], Some("b"));
        again["metadata"]["resourceVersion"] = json!("2");
        assert!(f.apply(again).is_empty());

        // Untracked now: no app, no body.
        let mut dropped = obj("v1", "ConfigMap", "shop", "cm", 1, &[], None);
        dropped["metadata"]["resourceVersion"] = json!("3");
        assert_eq!(f.apply(dropped), vec!["b"]);
        assert!(f.store.apps().is_empty());
        assert_eq!(f.store.stats().bodies, 0);
    }

    #[test]
    fn recreated_objects_replace_the_old_uid() {
        let mut f = Fixture::new();
        f.apply(obj(
            "apps/v1",
            "Deployment",
            "shop",
            "web",
            1,
            &[],
            Some("a"),
        ));
        f.apply(obj("apps/v1", "ReplicaSet", "shop", "rs", 2, &[1], None));
        // Deleted and created again while the watch was down: new uid, same name.
        f.apply(obj(
            "apps/v1",
            "Deployment",
            "shop",
            "web",
            9,
            &[],
            Some("a"),
        ));
        assert_eq!(f.store.stats().objects, 2);
        // The old ReplicaSet's owner is gone: it is no longer in the tree.
        assert_eq!(names(&f.store.tree("a")), ["Deployment/web"]);
    }

    #[test]
    fn relists_replace_a_scope_and_drop_what_was_deleted_meanwhile() {
        let mut f = Fixture::new();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            f.apply(obj(
                "v1",
                "ConfigMap",
                "shop",
                name,
                i as u32 + 1,
                &[],
                Some("app"),
            ));
        }
        f.apply(obj("v1", "ConfigMap", "other", "x", 10, &[], Some("app2")));
        assert!(!f.store.is_synced(), "nothing listed yet");
        // A relist of all namespaces: b was deleted during the gap, d created, c changed.
        let mut c = obj("v1", "ConfigMap", "shop", "c", 3, &[], Some("app"));
        c["metadata"]["resourceVersion"] = json!("7");
        let listed = vec![
            obj("v1", "ConfigMap", "shop", "a", 1, &[], Some("app")),
            c,
            obj("v1", "ConfigMap", "shop", "d", 4, &[], Some("app")),
            obj("v1", "ConfigMap", "other", "x", 10, &[], Some("app2")),
        ];
        let listed: Vec<CompactObject> = listed.into_iter().map(|v| f.compact(v)).collect();
        let touched = f.store.replace_scope(&gk("", "ConfigMap"), "", listed);
        assert_eq!(
            touched.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            vec!["app"],
            "unchanged objects touch nothing"
        );
        let names: Vec<String> = f
            .store
            .managed_by("app")
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, ["a", "c", "d"]);
        assert_eq!(f.store.managed_by("app2").len(), 1);

        // A namespace-scoped relist leaves other namespaces alone.
        let touched = f
            .store
            .replace_scope(&gk("", "ConfigMap"), "other", Vec::new());
        assert_eq!(
            touched.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            vec!["app2"]
        );
        assert_eq!(f.store.managed_by("app").len(), 3);
        assert!(f.store.managed_by("app2").is_empty());
    }

    #[test]
    fn sync_state_follows_every_scope() {
        let mut store = Store::default();
        let ar = ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
        );
        store.add_kind(&ar, true, &["a".into(), "b".into()]);
        let cm = gk("", "ConfigMap");
        store.set_error(&cm, Some("forbidden".into()));
        assert_eq!(
            store.unsynced(),
            vec![(cm.clone(), Some("forbidden".into()))]
        );
        store.replace_scope(&cm, "a", Vec::new());
        assert!(!store.is_synced());
        store.replace_scope(&cm, "b", Vec::new());
        assert!(store.is_synced());
        assert!(store.kinds()[0].last_error.is_none());
    }

    #[test]
    fn removing_a_kind_forgets_its_objects_and_accounting_returns_to_empty() {
        let mut f = Fixture::new();
        let empty = f.store.stats().bytes;
        f.apply(obj(
            "apps/v1",
            "Deployment",
            "shop",
            "web",
            1,
            &[],
            Some("a"),
        ));
        f.apply(obj("apps/v1", "ReplicaSet", "shop", "rs", 2, &[1], None));
        f.apply(obj("v1", "Pod", "shop", "p", 3, &[2], None));
        let stats = f.store.stats();
        assert_eq!(
            (stats.objects, stats.tracked, stats.apps, stats.bodies),
            (3, 1, 1, 1)
        );
        assert!(stats.bytes > empty);
        let touched = f.store.remove_kind(&gk("apps", "ReplicaSet"));
        assert_eq!(touched.len(), 1);
        f.store.remove_kind(&gk("apps", "Deployment"));
        f.store.remove_kind(&gk("", "Pod"));
        let after = f.store.stats();
        assert_eq!(after.objects, 0);
        assert_eq!(f.store.entry_bytes, 0);
        assert_eq!(f.store.child_slots, 0);
        assert_eq!(f.store.body_bytes, 0);
        assert!(f.store.namespaces.is_empty());
        assert!(f.store.resource(&gk("", "Pod")).is_none());
    }

    #[test]
    fn entries_stay_compact() {
        // docs/cluster-cache.md quotes these sizes; a field added carelessly shows here.
        assert_eq!(size_of::<Entry>(), 128);
        assert_eq!(size_of::<(Uid, Entry)>(), 144);
    }

    #[test]
    fn owner_cycles_do_not_hang_the_walk() {
        let mut f = Fixture::new();
        f.apply(obj("v1", "ConfigMap", "shop", "x", 1, &[2], None));
        f.apply(obj("v1", "ConfigMap", "shop", "y", 2, &[1], None));
        assert!(f.store.apps().is_empty());
        let key = ResourceKey {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: "shop".into(),
            name: "x".into(),
        };
        assert!(f.store.apps_of_key(&key).is_empty());
    }
}
