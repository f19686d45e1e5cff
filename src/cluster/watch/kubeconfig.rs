//! Builds the `kube::Client` the watcher uses, from `--kubeconfig`, `--context`, `KUBECONFIG`,
//! `~/.kube/config` or the in-cluster service account — in kubectl's order of precedence.
//!
//! It owns only the choice of credentials and the wording of what to fix when none work; it
//! must not start watches (that is `watch`) nor parse command lines (that is `cli`/`config`).

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::accepted::AcceptedWatches;

/// Where the cluster credentials come from. Both `None`: `KUBECONFIG`, then `~/.kube/config`,
/// then the in-cluster service account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeSettings {
    /// `--kubeconfig PATH`: this file and no other.
    pub kubeconfig: Option<PathBuf>,
    /// `--context NAME`: this context instead of the file's `current-context`.
    pub context: Option<String>,
}

/// Why no client could be built. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "no kubeconfig found (KUBECONFIG unset, ~/.kube/config missing) and not in a cluster; \
         use --kubeconfig or --no-kube"
    )]
    NoConfig,
    #[error("cannot read kubeconfig '{path}': {reason}; check the path given to --kubeconfig")]
    ReadKubeconfig { path: String, reason: String },
    #[error(
        "kubeconfig '{origin}': context '{context}' cannot be used: {reason}; \
         list contexts with 'kubectl config get-contexts'"
    )]
    Context { origin: String, context: String, reason: String },
    #[error("kubeconfig '{origin}' is not usable: {reason}")]
    Kubeconfig { origin: String, reason: String },
    #[error(
        "in-cluster configuration failed: {reason}; mount the service account token or use \
         --kubeconfig"
    )]
    InCluster { reason: String },
    #[error("cannot create a Kubernetes client for '{server}': {reason}")]
    Client { server: String, reason: String },
}

/// A client for [`spawn_watchers`](super::spawn_watchers), made by [`connect`]: it also notes
/// which watches the API server accepts, the only sign that a dropped watch came back quietly.
pub struct WatchClient {
    pub(super) client: kube::Client,
    pub(super) accepted: AcceptedWatches,
}

/// Builds a client from `settings`. Reads files but sends no request: a cluster that is down
/// shows up later as a watch state, not here.
pub async fn connect(settings: &KubeSettings) -> Result<WatchClient, WatchError> {
    let config = config(settings).await?;
    let server = config.cluster_url.to_string();
    let accepted = AcceptedWatches::new();
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|error| WatchError::Client { server, reason: error.to_string() })?;
    Ok(WatchClient { client: builder.with_layer(&accepted).build(), accepted })
}

async fn config(settings: &KubeSettings) -> Result<kube::Config, WatchError> {
    let options = KubeConfigOptions { context: settings.context.clone(), ..Default::default() };
    if let Some(path) = &settings.kubeconfig {
        let kubeconfig =
            Kubeconfig::read_from(path).map_err(|error| WatchError::ReadKubeconfig {
                path: path.display().to_string(),
                reason: error.to_string(),
            })?;
        let origin = path.display().to_string();
        return kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|error| kubeconfig_error(&origin, settings, &error));
    }
    let env_path = std::env::var_os("KUBECONFIG").filter(|value| !value.is_empty());
    let home_config = std::env::var_os("HOME").map(|home| Path::new(&home).join(".kube/config"));
    let have_file = env_path.is_some() || home_config.as_deref().is_some_and(Path::exists);
    let origin = match (&env_path, &home_config) {
        (Some(env), _) => env.to_string_lossy().into_owned(),
        (None, Some(home)) => home.display().to_string(),
        (None, None) => "~/.kube/config".to_owned(),
    };
    if have_file {
        return kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|error| kubeconfig_error(&origin, settings, &error));
    }
    if settings.context.is_some() {
        // A context names an entry of a kubeconfig: without one it cannot mean anything.
        return Err(WatchError::NoConfig);
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        return Err(WatchError::NoConfig);
    }
    kube::Config::incluster().map_err(|error| WatchError::InCluster { reason: error.to_string() })
}

fn kubeconfig_error(
    origin: &str,
    settings: &KubeSettings,
    error: &kube::config::KubeconfigError,
) -> WatchError {
    match &settings.context {
        Some(context) => WatchError::Context {
            origin: origin.to_owned(),
            context: context.clone(),
            reason: error.to_string(),
        },
        None => WatchError::Kubeconfig { origin: origin.to_owned(), reason: error.to_string() },
    }
}
