//! The references measured in the same rounds as the proxy (nginx and the framework floor,
//! `ccp_bench::reference`), those the options ask for and that start.

use ccp_bench::cli::Progress;
pub use ccp_bench::reference::{find_floor, find_nginx as find, Reference};
use ccp_bench::reference::{start_floor, start_nginx};

use crate::Options;

/// The reference processes measured beside the proxy, each when available.
#[derive(Default)]
pub struct References {
    pub nginx: Option<Reference>,
    pub floor: Option<Reference>,
}

impl References {
    /// Starts the references `opts` asks for in front of `upstream_url`; one that does not start
    /// is left out of the report, with a progress line saying why.
    pub async fn start(opts: &Options, upstream_url: &str, progress: &Progress) -> Self {
        let mut references = Self::default();
        if let Some(bin) = &opts.nginx {
            match start_nginx(bin, upstream_url, 0, opts.pin).await {
                Ok(nginx) => {
                    progress.say(format!("nginx reference (pid {}) at {}", nginx.pid(), nginx.url));
                    references.nginx = Some(nginx);
                }
                Err(e) => progress.say(format!("no nginx reference rows: {e:#}")),
            }
        }
        if let Some(bin) = &opts.floor {
            match start_floor(bin, upstream_url, opts.workers, opts.pin).await {
                Ok(floor) => {
                    progress.say(format!("framework floor (pid {}) at {}", floor.pid(), floor.url));
                    references.floor = Some(floor);
                }
                Err(e) => progress.say(format!("no framework floor rows: {e:#}")),
            }
        }
        references
    }
}
