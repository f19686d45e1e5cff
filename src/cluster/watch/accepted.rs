//! Notices the API server accepting a watch request, per kind.
//!
//! kube-rs resumes a dropped watch from its `resourceVersion` and passes over bookmarks without
//! yielding anything, so a watch that comes back on a quiet cluster says nothing: the header
//! would read "reconnecting" until that kind's next change. A tower layer on the client sees the
//! API server's answer to every watch request, and a 2xx is the news the watcher never gives.
//! This module owns only that observation; what it means for the state is `KindMapper`'s.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use kube::Resource;
use tokio::sync::watch;

use crate::cluster::ResourceKind;

/// One counter per kind, bumped on every accepted watch. Clones share the counters.
#[derive(Clone)]
pub(super) struct AcceptedWatches {
    kinds: Arc<[(ResourceKind, String, watch::Sender<u64>)]>,
}

impl AcceptedWatches {
    pub(super) fn new() -> Self {
        let kinds: Vec<_> = ResourceKind::ALL
            .into_iter()
            .map(|kind| (kind, collection_path(kind), watch::channel(0).0))
            .collect();
        Self { kinds: kinds.into() }
    }

    /// Changes each time the API server accepts a watch on `kind`.
    pub(super) fn subscribe(&self, kind: ResourceKind) -> watch::Receiver<u64> {
        match self.kinds.iter().find(|(k, _, _)| *k == kind) {
            Some((_, _, sender)) => sender.subscribe(),
            // Every kind has a counter (see `new`); a receiver that never changes is harmless.
            None => watch::channel(0).1,
        }
    }

    /// The counter of the kind this request watches, if it is a watch of one of ours.
    fn watched(&self, uri: &http::Uri) -> Option<&watch::Sender<u64>> {
        let watching = uri.query().is_some_and(|query| {
            query.split('&').any(|pair| pair == "watch=true" || pair == "watch=1")
        });
        if !watching {
            return None;
        }
        self.kinds.iter().find(|(_, path, _)| path == uri.path()).map(|(_, _, sender)| sender)
    }
}

/// The cluster-wide collection path kube-rs lists and watches, e.g. `/api/v1/pods`.
fn collection_path(kind: ResourceKind) -> String {
    match kind {
        ResourceKind::Namespace => core::Namespace::url_path(&(), None),
        ResourceKind::Pod => core::Pod::url_path(&(), None),
        ResourceKind::Service => core::Service::url_path(&(), None),
        ResourceKind::EndpointSlice => discovery::EndpointSlice::url_path(&(), None),
        ResourceKind::Node => core::Node::url_path(&(), None),
        ResourceKind::NetworkPolicy => networking::NetworkPolicy::url_path(&(), None),
    }
}

impl<S> tower::Layer<S> for AcceptedWatches {
    type Service = NoteAccepted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NoteAccepted { inner, watches: self.clone() }
    }
}

/// The client's service with [`AcceptedWatches`] around it.
pub(super) struct NoteAccepted<S> {
    inner: S,
    watches: AcceptedWatches,
}

type Request = http::Request<kube::client::Body>;

impl<S, B> tower::Service<Request> for NoteAccepted<S>
where
    S: tower::Service<Request, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let counter = self.watches.watched(request.uri()).cloned();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if let Some(counter) = counter
                && response.status().is_success()
            {
                counter.send_modify(|accepted| *accepted += 1);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> http::Uri {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn only_watch_requests_on_our_collections_count() {
        let watches = AcceptedWatches::new();
        let pods = watches.subscribe(ResourceKind::Pod);
        let watch = "/api/v1/pods?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true";
        assert!(watches.watched(&uri(watch)).is_some_and(|s| s.subscribe().same_channel(&pods)));
        assert!(watches.watched(&uri("/api/v1/pods?&limit=500")).is_none(), "a list");
        assert!(watches.watched(&uri("/api/v1/secrets?watch=true")).is_none(), "not ours");
        let slices = "/apis/discovery.k8s.io/v1/endpointslices?watch=1";
        let slice_counter = watches.subscribe(ResourceKind::EndpointSlice);
        assert!(
            watches
                .watched(&uri(slices))
                .is_some_and(|s| s.subscribe().same_channel(&slice_counter))
        );
    }
}
