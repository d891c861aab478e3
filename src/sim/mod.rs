//! TEMPORARY STUB — replaced by the simulator helper's module.
#![allow(missing_docs, dead_code, unused_variables)]
use std::net::SocketAddr;
use std::time::Duration;
pub struct Script;
impl Script {
    pub fn demo(_: Duration) -> Self {
        Script
    }
}
pub struct SimBuilder;
impl SimBuilder {
    pub fn new() -> Self {
        SimBuilder
    }
    pub fn bind(self, _: SocketAddr) -> Self {
        self
    }
    pub fn session(self, _: &str, _: &str, _: Script) -> Self {
        self
    }
    pub async fn start(self) -> std::io::Result<SimHandle> {
        unimplemented!()
    }
}
#[derive(Clone)]
pub struct SimHandle;
impl SimHandle {
    pub fn base_url(&self) -> String {
        unimplemented!()
    }
    pub async fn stop(&self) {}
}
pub async fn run_standalone(
    _: SocketAddr,
    _: usize,
    _: String,
    _: Duration,
) -> std::io::Result<()> {
    Ok(())
}
