//! The Kubernetes client of `troupe serve` and `troupe plan`: from the user's kubeconfig
//! (`KUBECONFIG`, `~/.kube/config`) or, inside a cluster, the pod's service account.

use anyhow::Context;
use kube::client::{Body, ClientBuilder};
use prometheus::IntCounterVec;
use tower::util::MapRequestLayer;

/// A client for the cluster the environment points at. With `requests`, every request sent is
/// counted there by HTTP method.
pub async fn connect(requests: Option<IntCounterVec>) -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer().await.context(
        "finding the Kubernetes cluster (KUBECONFIG, ~/.kube/config, or the in-cluster service account)",
    )?;
    let builder = ClientBuilder::try_from(config).context("building the Kubernetes client")?;
    Ok(match requests {
        Some(counter) => builder
            .with_layer(&MapRequestLayer::new(move |req: http::Request<Body>| {
                counter.with_label_values(&[req.method().as_str()]).inc();
                req
            }))
            .build(),
        None => builder.build(),
    })
}
