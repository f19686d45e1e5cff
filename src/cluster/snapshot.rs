//! The snapshot loader: `kubectl get -o yaml|json` output → the same `ClusterEvent`s the live
//! watcher produces.
//!
//! Accepts a `List` (what `kubectl get a,b,c -o yaml` prints), several YAML documents, a JSON
//! document, or single objects. Kinds netwatch does not use are counted, not errors; an object of
//! a used kind that cannot be read is an error naming it, so the user fixes the file rather than
//! trusting a partial view. Parsing is pure: the caller reads the file.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::event::{ClusterEvent, Object, ResourceKind};
use super::{SkipCounts, trim};

/// Why a snapshot could not be loaded. Every variant says where.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{origin}: line {line}, column {column}: {message}")]
    Syntax { origin: String, line: usize, column: usize, message: String },
    #[error("{origin}: {message}")]
    Shape { origin: String, message: String },
    #[error("{origin}: {source}")]
    Object { origin: String, source: trim::TrimError },
}

/// What a snapshot file held: events to apply, and what was skipped.
#[derive(Debug, Default)]
pub struct LoadedSnapshot {
    pub events: Vec<ClusterEvent>,
    pub skipped: SkipCounts,
    pub object_count: usize,
}

/// Parses snapshot text. `origin` names the file in messages.
pub fn parse(origin: &str, text: &str) -> Result<LoadedSnapshot, SnapshotError> {
    let documents = parse_documents(origin, text)?;
    let mut by_kind: BTreeMap<ResourceKind, Vec<Object>> = BTreeMap::new();
    let mut skipped = SkipCounts::default();
    let mut object_count = 0;
    for document in documents {
        collect(origin, document, &mut by_kind, &mut skipped, &mut object_count)?;
    }
    // One Reset per kind (also for kinds with no objects: the file is the whole truth), then
    // Synced, exactly as a watcher's initial list ends.
    let mut events = Vec::new();
    for kind in ResourceKind::ALL {
        events.push(ClusterEvent::Reset(kind, by_kind.remove(&kind).unwrap_or_default()));
    }
    events.extend(ResourceKind::ALL.map(ClusterEvent::Synced));
    Ok(LoadedSnapshot { events, skipped, object_count })
}

fn parse_documents(origin: &str, text: &str) -> Result<Vec<Value>, SnapshotError> {
    if text.trim_start().starts_with(['{', '[']) {
        let value: Value = serde_json::from_str(text).map_err(|e| SnapshotError::Syntax {
            origin: origin.to_owned(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        return Ok(vec![value]);
    }
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = <Value as serde::Deserialize>::deserialize(document).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            // The YAML library repeats the position in its message; keep only what is wrong.
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
            SnapshotError::Syntax { origin: origin.to_owned(), line, column, message }
        })?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn collect(
    origin: &str,
    value: Value,
    by_kind: &mut BTreeMap<ResourceKind, Vec<Object>>,
    skipped: &mut SkipCounts,
    count: &mut usize,
) -> Result<(), SnapshotError> {
    if let Value::Array(items) = value {
        for item in items {
            collect(origin, item, by_kind, skipped, count)?;
        }
        return Ok(());
    }
    let Some(kind) = value.get("kind").and_then(Value::as_str).map(str::to_owned) else {
        return Err(SnapshotError::Shape {
            origin: origin.to_owned(),
            message: "a document has no 'kind': expected output of 'kubectl get -o yaml'".into(),
        });
    };
    if kind == "List" || kind.ends_with("List") {
        let items = match value.get("items") {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(SnapshotError::Shape {
                    origin: origin.to_owned(),
                    message: format!("'{kind}' has 'items' that is not a list"),
                });
            }
        };
        // A typed list straight from the API (`kubectl get --raw /api/v1/pods`: a `PodList`)
        // leaves `kind` and `apiVersion` off its items: they are the list's.
        let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
        let api_version = value.get("apiVersion").cloned();
        for mut item in items {
            if let (Some(item_kind), Value::Object(fields)) = (item_kind, &mut item)
                && !fields.contains_key("kind")
            {
                fields.insert("kind".into(), Value::String(item_kind.to_owned()));
                if let Some(version) = &api_version {
                    fields.entry("apiVersion").or_insert_with(|| version.clone());
                }
            }
            collect(origin, item, by_kind, skipped, count)?;
        }
        return Ok(());
    }
    let object = match kind.as_str() {
        "Namespace" => decode::<core::Namespace, _>(origin, &kind, value, trim::namespace)?
            .map(Object::Namespace),
        "Pod" => decode::<core::Pod, _>(origin, &kind, value, trim::pod)?.map(Object::Pod),
        "Service" => {
            decode::<core::Service, _>(origin, &kind, value, trim::service)?.map(Object::Service)
        }
        "EndpointSlice" => {
            decode::<discovery::EndpointSlice, _>(origin, &kind, value, trim::endpoint_slice)?
                .map(Object::EndpointSlice)
        }
        "Node" => decode::<core::Node, _>(origin, &kind, value, trim::node)?.map(Object::Node),
        "NetworkPolicy" => {
            decode::<networking::NetworkPolicy, _>(origin, &kind, value, trim::network_policy)?
                .map(Object::NetworkPolicy)
        }
        _ => {
            *skipped.unknown_kinds.entry(kind).or_default() += 1;
            None
        }
    };
    if let Some(object) = object {
        *count += 1;
        by_kind.entry(object.kind()).or_default().push(object);
    }
    Ok(())
}

fn decode<T: DeserializeOwned, U>(
    origin: &str,
    kind: &str,
    value: Value,
    trim: impl Fn(&T) -> Result<U, trim::TrimError>,
) -> Result<Option<U>, SnapshotError> {
    let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?").to_owned();
    let typed: T = serde_json::from_value(value).map_err(|e| SnapshotError::Shape {
        origin: origin.to_owned(),
        message: format!("{kind} '{name}' does not match the Kubernetes schema: {e}"),
    })?;
    trim(&typed)
        .map(Some)
        .map_err(|source| SnapshotError::Object { origin: origin.to_owned(), source })
}
