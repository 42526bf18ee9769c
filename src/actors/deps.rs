//! What every actor may use: the store, the drivers and the reconciler that
//! calls them, the configuration and the watch hub. Cloning is cheap (all
//! shared).

use std::sync::Arc;

use crate::actors::build_slots::BuildSlots;
use crate::actors::events::DeploymentEvents;
use crate::actors::reconciler::Reconciler;
use crate::config::Config;
use crate::io::backends::Backends;
use crate::io::builder::Builder;
use crate::io::builder::log::BuildLogs;
use crate::io::region::Regions;
use crate::io::store::Store;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    pub regions: Regions,
    pub reconciler: Reconciler,
    /// Where the edge sends each deployment's requests; the reconciler
    /// keeps it in step with the drivers.
    pub backends: Backends,
    pub builder: Arc<dyn Builder>,
    /// At most `[builder] slots` builds at once, across projects.
    pub build_slots: BuildSlots,
    pub build_logs: BuildLogs,
    pub config: Arc<Config>,
    pub events: DeploymentEvents,
    /// This daemon's Prometheus figures (served only with `[metrics]`).
    pub metrics: Arc<Metrics>,
    #[cfg(feature = "fail-points")]
    pub fail_points: crate::fail_points::FailPoints,
}

impl Deps {
    /// Must be called inside the runtime the daemon runs on (the
    /// reconciler's workers are spawned there).
    pub fn new(config: Config, store: Store) -> Self {
        let regions = Regions::from_config(
            &config.regions,
            &config.data_dir,
            &config.builder.insecure_registries(),
        );
        let backends = Backends::default();
        let metrics = Arc::new(Metrics::new(
            config.regions.keys().map(String::as_str),
            store.stats().metrics.clone(),
        ));
        Self {
            reconciler: Reconciler::new(
                regions.clone(),
                store.clone(),
                backends.clone(),
                metrics.clone(),
            ),
            metrics,
            backends,
            regions,
            builder: crate::io::builder::from_config(&config.builder, &config.data_dir),
            build_slots: BuildSlots::new(config.builder.slots()),
            build_logs: BuildLogs::new(&config.data_dir),
            store,
            events: DeploymentEvents::new(config.max_watchers, config.max_watchers_per_deployment),
            #[cfg(feature = "fail-points")]
            fail_points: crate::fail_points::FailPoints::new(&config.fail_points),
            config: Arc::new(config),
        }
    }

    /// Panics or aborts when the named fail point is armed to (tests only).
    pub fn fail_point(&self, _name: &str) {
        #[cfg(feature = "fail-points")]
        self.fail_points.hit(_name);
    }
}
