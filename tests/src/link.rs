//! A TCP link on loopback to a server (NATS) that a test can cut: every connection through it is
//! closed, and new ones are closed as soon as they are accepted, until it is mended, so a client sees its connection drop and
//! stay down for as long as the test wants, without the server itself going away.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A TCP relay from 127.0.0.1 to one upstream address.
pub struct Link {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    relays: Arc<Mutex<Vec<AbortHandle>>>,
    task: JoinHandle<()>,
}

impl Link {
    /// Relays connections to `upstream` (`host:port`).
    pub async fn to(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the link");
        let addr = listener.local_addr().expect("the link's address");
        let (cut, relays) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::<AbortHandle>::new())));
        let (upstream, cut_, relays_) = (upstream.to_owned(), cut.clone(), relays.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if cut_.load(Ordering::SeqCst) {
                    continue; // closed at once
                }
                let upstream = upstream.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut relays = relays_.lock().expect("relays");
                relays.retain(|r| !r.is_finished());
                // A cut between the accept and here closes this one too.
                if cut_.load(Ordering::SeqCst) {
                    relay.abort();
                } else {
                    relays.push(relay.abort_handle());
                }
            }
        });
        Self { addr, cut, relays, task }
    }

    /// `nats://` URL of the link.
    pub fn nats_url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Closes every connection through the link and refuses new ones until [`Link::mend`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for relay in self.relays.lock().expect("relays").drain(..) {
            relay.abort();
        }
    }

    /// Accepts connections again.
    pub fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
