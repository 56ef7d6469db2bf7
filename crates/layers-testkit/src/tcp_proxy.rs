//! A TCP proxy a test can cut: put it between a node and its database (or Redis) to partition
//! that node alone. `cut()` drops every open connection and refuses new ones (as a dead network
//! path or a stopped server would: connects fail at once); `blackhole()` accepts and forwards
//! nothing (as a network that loses packets: calls hang until their timeouts); `restore()`
//! forwards again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const OPEN: u8 = 0;
const CUT: u8 = 1;
const BLACKHOLE: u8 = 2;

pub struct TcpProxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// Bumped on every cut: open connections watch it and close.
    generation: watch::Sender<u64>,
}

impl TcpProxy {
    /// Listens on a random local port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(OPEN));
        let (generation, _) = watch::channel(0u64);
        let (m, g) = (mode.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                match m.load(Ordering::SeqCst) {
                    CUT => drop(client),
                    BLACKHOLE => {
                        let mut cut = g.subscribe();
                        tokio::spawn(async move {
                            // Hold the socket silently until the next cut or restore.
                            let _ = cut.changed().await;
                            drop(client);
                        });
                    }
                    _ => {
                        let cut = g.subscribe();
                        tokio::spawn(pipe(client, target, cut));
                    }
                }
            }
        });
        TcpProxy { addr, mode, generation }
    }

    /// The proxy's address as a `host:port` for URLs.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Drops every connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.mode.store(CUT, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Drops every connection; new ones are accepted and never answered.
    pub fn blackhole(&self) {
        self.mode.store(BLACKHOLE, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.mode.store(OPEN, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }
}

async fn pipe(mut client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<u64>) {
    let Ok(mut upstream) = TcpStream::connect(target).await else { return };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = cut.changed() => {}
    }
}
