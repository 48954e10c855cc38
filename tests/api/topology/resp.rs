//! RESP over a short-lived connection: enough to drive and inspect the nodes of a topology
//! without a client library.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::helpers::{read_resp, Resp};

/// Send one command to `127.0.0.1:port` and read its reply.
pub fn command(port: u16, args: &[&str]) -> std::io::Result<Resp> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out)?;
    read_resp(&mut BufReader::new(stream))
}

/// One `field:value` line of an `INFO` section.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    let prefix = format!("{field}:");
    info.lines().find_map(|line| line.strip_prefix(&prefix)).map(|v| v.trim().to_owned())
}

/// The reply, unless the connection failed or Redis answered an error.
pub(super) fn command_ok(port: u16, args: &[&str]) -> Option<Resp> {
    match command(port, args) {
        Ok(Resp::Error(_)) | Err(_) => None,
        Ok(reply) => Some(reply),
    }
}
