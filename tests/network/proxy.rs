//! A small forward proxy for tests, on threads: `CONNECT` tunnels and absolute-form
//! plain-http requests (several per client connection, as real proxies keep them alive),
//! optional `Proxy-Authorization: Basic`, its own host table (so a name such as
//! `cxone.test` exists only through it), and a record of what it carried.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use base64::Engine as _;

/// One `CONNECT` the proxy accepted.
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// `host:port` asked for.
    pub target: String,
    /// The `User-Agent` of the `CONNECT`.
    pub user_agent: String,
    /// The local address of the proxy's connection to the target.
    pub upstream: SocketAddr,
}

/// One absolute-form request the proxy forwarded.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// Serial number of the client connection that carried it.
    pub connection: usize,
    /// Method.
    pub method: String,
    /// The absolute URL of the request line.
    pub url: String,
    /// Its `User-Agent`.
    pub user_agent: String,
}

/// What the proxy saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Tunnels opened.
    pub tunnels: Vec<Tunnel>,
    /// Plain-http requests forwarded.
    pub forwarded: Vec<Forwarded>,
    /// Requests answered 407.
    pub refused: usize,
}

/// A running proxy; its threads end with the test process.
pub struct TestProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Clone)]
struct Settings {
    hosts: Arc<HashMap<String, SocketAddr>>,
    /// Expected `Proxy-Authorization` value, if credentials are demanded.
    authorization: Option<String>,
    seen: Arc<Mutex<Seen>>,
}

impl TestProxy {
    /// Starts a proxy resolving `hosts` itself (other targets must be `IP:port`),
    /// demanding `credentials` (`user`, `password`) when given.
    pub fn start(hosts: &[(&str, SocketAddr)], credentials: Option<(&str, &str)>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().expect("local address").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let settings = Settings {
            hosts: Arc::new(hosts.iter().map(|(h, a)| (h.to_string(), *a)).collect()),
            authorization: credentials.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
            seen: seen.clone(),
        };
        std::thread::spawn(move || {
            for (serial, client) in listener.incoming().flatten().enumerate() {
                let settings = settings.clone();
                std::thread::spawn(move || serve(client, serial, &settings));
            }
        });
        TestProxy { port, seen }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// What it carried so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

/// A request head: request line parts and lowercase headers.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Head> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(Head {
        method,
        target,
        headers,
    })
}

fn resolve(settings: &Settings, authority: &str) -> Option<SocketAddr> {
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let port: u16 = authority.rsplit_once(':')?.1.parse().ok()?;
    match settings.hosts.get(host) {
        Some(addr) => Some(SocketAddr::new(addr.ip(), port)),
        None => authority.parse().ok(),
    }
}

fn respond(client: &mut TcpStream, status: &str) {
    let _ = write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

/// Serves one client connection: one `CONNECT`, or plain-http requests until the client
/// closes it.
fn serve(client: TcpStream, serial: usize, settings: &Settings) {
    let mut reader = BufReader::new(client.try_clone().expect("clone"));
    let mut client = client;
    while let Some(head) = read_head(&mut reader) {
        if let Some(expected) = &settings.authorization {
            if head.header("proxy-authorization") != *expected {
                settings.seen.lock().unwrap().refused += 1;
                let _ = write!(
                    client,
                    "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                return;
            }
        }
        if head.method == "CONNECT" {
            return tunnel(client, reader, &head, settings);
        }
        if !forward(&mut client, &mut reader, &head, serial, settings) {
            return;
        }
    }
}

fn tunnel(mut client: TcpStream, reader: BufReader<TcpStream>, head: &Head, settings: &Settings) {
    let Some(upstream) = resolve(settings, &head.target).and_then(|a| TcpStream::connect(a).ok()) else {
        respond(&mut client, "502 Bad Gateway");
        return;
    };
    settings.seen.lock().unwrap().tunnels.push(Tunnel {
        target: head.target.clone(),
        user_agent: head.header("user-agent"),
        upstream: upstream.local_addr().expect("local address"),
    });
    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let mut up_writer = upstream.try_clone().expect("clone");
    let early = reader.buffer().to_vec();
    let _ = up_writer.write_all(&early);
    let mut from_client = reader.into_inner();
    let mut to_client = client;
    let mut from_upstream = upstream;
    let pump = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut up_writer);
        let _ = up_writer.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut from_upstream, &mut to_client);
    let _ = to_client.shutdown(Shutdown::Both);
    let _ = pump.join();
}

/// Forwards one absolute-form request over a fresh upstream connection and relays the
/// response with the connection kept alive; false when the client connection is done.
fn forward(
    client: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    head: &Head,
    serial: usize,
    settings: &Settings,
) -> bool {
    let Some(rest) = head.target.strip_prefix("http://") else {
        respond(client, "400 Bad Request");
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(mut upstream) = resolve(settings, authority).and_then(|a| TcpStream::connect(a).ok()) else {
        respond(client, "502 Bad Gateway");
        return false;
    };
    settings.seen.lock().unwrap().forwarded.push(Forwarded {
        connection: serial,
        method: head.method.clone(),
        url: head.target.clone(),
        user_agent: head.header("user-agent"),
    });
    let length: usize = head.header("content-length").parse().unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return false;
    }
    let mut request = format!(
        "{} {} HTTP/1.1\r\n",
        head.method,
        if path.is_empty() { "/" } else { path }
    );
    for (name, value) in &head.headers {
        if !matches!(name.as_str(), "proxy-authorization" | "proxy-connection" | "connection") {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    request.push_str("connection: close\r\n\r\n");
    let _ = upstream.write_all(request.as_bytes());
    let _ = upstream.write_all(&body);
    let mut response = Vec::new();
    let _ = upstream.read_to_end(&mut response);
    client.write_all(&keep_alive(&response)).is_ok()
}

/// The upstream's response without its `connection: close` (it has a length, so the
/// client can keep the connection to the proxy).
fn keep_alive(response: &[u8]) -> Vec<u8> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&response[..end]);
    let mut out: Vec<u8> = head
        .split_inclusive("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .collect::<String>()
        .into_bytes();
    out.extend_from_slice(&response[end..]);
    out
}
