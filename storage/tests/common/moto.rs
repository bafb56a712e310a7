//! A real S3-protocol server for tests: moto's server mode (`scripts/setup` installs it),
//! on 127.0.0.1 port 0, killed on drop. `pause`/`resume` stop and continue the process
//! (SIGSTOP/SIGCONT) so an outage keeps what the server stored.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BUCKET: &str = "potok-test";

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Moto {
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server not found: run scripts/setup");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("http://127.0.0.1:") {
                    let url: String = line[i..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url);
                    }
                }
            }
        });
        let endpoint =
            tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
                .await
                .unwrap()
                .expect("moto_server did not say where it listens in 30 s");
        let moto = Moto { child, endpoint };
        moto.create_bucket().await;
        moto
    }

    async fn create_bucket(&self) {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let req = hyper::Request::put(format!("{}/{BUCKET}", self.endpoint))
            .body(http_body_util::Empty::new())
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .expect("moto: no answer to CreateBucket")
            .unwrap();
        assert!(
            resp.status().is_success(),
            "CreateBucket: {}",
            resp.status()
        );
    }

    /// `[storage]` for this server.
    pub fn storage(&self) -> potok_config::StorageConfig {
        let mut s = potok_config::StorageConfig {
            backend: potok_config::StorageBackend::S3,
            ..Default::default()
        };
        s.s3.endpoint = self.endpoint.clone();
        s.s3.region = "ru-central1".into();
        s.s3.bucket = BUCKET.into();
        s.s3.path_style = true;
        s.s3.access_key_id = Some(potok_config::Secret::new("test-access-key"));
        s.s3.secret_access_key = Some(potok_config::Secret::new("test-secret-key"));
        s.s3.timeout = "2s".parse().unwrap();
        s
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} moto");
    }

    /// Stops the server process (it answers nothing until resumed).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Continues it.
    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
