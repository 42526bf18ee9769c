//! What every actor may use: the store, the drivers, the configuration and
//! the watch hub. Cloning is cheap (all shared).

use std::sync::Arc;

use crate::actors::events::DeploymentEvents;
use crate::config::Config;
use crate::io::builder::Builder;
use crate::io::region::Regions;
use crate::io::store::Store;

#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    pub regions: Regions,
    pub builder: Arc<dyn Builder>,
    pub config: Arc<Config>,
    pub events: DeploymentEvents,
    #[cfg(feature = "fail-points")]
    pub fail_points: crate::actors::fail_points::FailPoints,
}

impl Deps {
    pub fn new(config: Config, store: Store) -> Self {
        Self {
            regions: Regions::from_config(&config.regions),
            builder: crate::io::builder::from_config(&config.builder),
            store,
            events: DeploymentEvents::default(),
            #[cfg(feature = "fail-points")]
            fail_points: crate::actors::fail_points::FailPoints::new(&config.fail_points),
            config: Arc::new(config),
        }
    }

    /// Panics when the named fail point is armed to (tests only).
    pub fn fail_point(&self, _name: &str) {
        #[cfg(feature = "fail-points")]
        self.fail_points.hit(_name);
    }
}
