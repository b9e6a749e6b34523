//! A slow link to a server: a TCP relay on loopback that passes what the client sends at once
//! and what the server answers at most `bytes_per_second` per connection, as a link to a distant
//! region does. It runs on its own thread and runtime, and stops when dropped.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The longest a relay lives, whatever the test does.
const MAX_LIFETIME: Duration = Duration::from_secs(600);

/// A running relay.
pub struct SlowLink {
    /// The port clients connect to.
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowLink {
    /// Relays `127.0.0.1:port` to `upstream`, its answers at most `bytes_per_second`.
    pub fn start(upstream: SocketAddr, bytes_per_second: u64) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind the relay");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("relay address").port();
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("slow-link-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the relay's runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = stopped => {}
                        _ = tokio::time::sleep(MAX_LIFETIME) => {}
                        _ = accept(listener, upstream, bytes_per_second) => {}
                    }
                });
            })
            .expect("start the relay thread");
        Self { port, stop: Some(stop), thread: Some(thread) }
    }

    /// A MongoDB URI through the relay.
    pub fn mongodb_uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, rate: u64) {
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let up = tokio::io::copy(&mut client_read, &mut server_write);
            let down = throttled_copy(&mut server_read, &mut client_write, rate);
            tokio::select! {
                _ = up => {}
                _ = down => {}
            }
        });
    }
}

/// Copies `from` to `to` at most `rate` bytes per second (in slices of a tenth of a second).
async fn throttled_copy(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    rate: u64,
) -> std::io::Result<()> {
    let slice = (rate / 10).max(1) as usize;
    let mut buffer = vec![0u8; slice];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        let started = tokio::time::Instant::now();
        to.write_all(&buffer[..n]).await?;
        let due = Duration::from_secs_f64(n as f64 / rate as f64);
        tokio::time::sleep_until(started + due).await;
    }
}
