//! What the benchmark commands (`src/bin/`) share: the command-line plumbing (`cli`), the
//! Claude Code request they send (`fixture`), the proxy as a child process (`proxy_process`),
//! the load generator (`load`), the fast fake Anthropic and Bedrock (`upstream`), the reference
//! proxies measured beside the proxy (`reference`: nginx, the framework floor) and the CPU,
//! memory and open-file figures read from `/proc` (`procfs`).

pub mod cli;
pub mod fixture;
pub mod load;
pub mod procfs;
pub mod proxy_process;
pub mod reference;
pub mod upstream;
