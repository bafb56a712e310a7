//! The edge's view of its origins. Today: whether any of them is alive, for `/readyz`.

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use potok_config::UpstreamConfig;
use potok_service::ReadinessCheck;

/// A readiness check that passes when at least one origin answers `GET /healthz` with 200
/// within the upstream timeouts; the failure names every origin and why it failed.
pub(crate) fn readiness(cfg: &UpstreamConfig) -> ReadinessCheck {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(cfg.connect_timeout.get()));
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let origins = cfg.origins.clone();
    let read_timeout = cfg.read_timeout.get();
    ReadinessCheck::new("upstream", move || {
        let client = client.clone();
        let origins = origins.clone();
        async move {
            if origins.is_empty() {
                return Err("no origin configured".to_owned());
            }
            let mut failures = Vec::new();
            for origin in &origins {
                let url = format!("{}/healthz", origin.trim_end_matches('/'));
                let uri = match url.parse::<hyper::Uri>() {
                    Ok(u) => u,
                    Err(e) => {
                        failures.push(format!("{url}: {e}"));
                        continue;
                    }
                };
                match tokio::time::timeout(read_timeout, client.get(uri)).await {
                    Ok(Ok(resp)) if resp.status().is_success() => return Ok(()),
                    Ok(Ok(resp)) => {
                        failures.push(format!("{url}: HTTP {}", resp.status().as_u16()))
                    }
                    Ok(Err(e)) => failures.push(format!("{url}: {}", describe(&e))),
                    Err(_) => failures.push(format!(
                        "{url}: no answer within {}ms",
                        read_timeout.as_millis()
                    )),
                }
            }
            Err(format!("no origin answered: {}", failures.join(", ")))
        }
    })
}

/// The innermost cause of a client error ("connection refused"), which is what an operator
/// needs; hyper's outer message is only "client error (Connect)".
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
