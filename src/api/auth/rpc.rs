//! Every RPC of `deployd.v1` and the access it needs: the authorization
//! table. The authentication layer refuses a method missing from it, and
//! the unit test below fails while the proto has a method this table does
//! not name, so a new RPC has no way in without a rule.
//!
//! Adding an RPC: add a variant, its line in [`Rpc::ALL`], its method path
//! in [`Rpc::path`] and its rule in [`Rpc::access`] (both matches are
//! exhaustive, so the compiler asks for them), then check every id of its
//! request against the caller in the handler (`Context::*_for`), and add
//! its row to `tests/authorization.rs`.

/// What a role needs to call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any token; a workspace token reads only its workspace.
    Read,
    /// Deployer or admin; a deployer changes only its workspace.
    Write,
    /// Admin tokens only.
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    CreateWorkspace,
    GetWorkspace,
    CreateProject,
    GetProject,
    ListProjects,
    SetEnvironmentRegions,
    AddCustomDomain,
    VerifyCustomDomain,
    RemoveCustomDomain,
    CreateDeployment,
    GetDeployment,
    ListDeployments,
    WatchDeployment,
    Rollback,
    Promote,
    ListRoutes,
    GetStats,
    CreateToken,
    RevokeToken,
    ListTokens,
    ListAuditEvents,
    CancelDeployment,
    GetBuildLog,
    ConnectRepository,
    GetRepositoryConnection,
    DisconnectRepository,
}

impl Rpc {
    pub const ALL: [Rpc; 26] = [
        Rpc::CreateWorkspace,
        Rpc::GetWorkspace,
        Rpc::CreateProject,
        Rpc::GetProject,
        Rpc::ListProjects,
        Rpc::SetEnvironmentRegions,
        Rpc::AddCustomDomain,
        Rpc::VerifyCustomDomain,
        Rpc::RemoveCustomDomain,
        Rpc::CreateDeployment,
        Rpc::GetDeployment,
        Rpc::ListDeployments,
        Rpc::WatchDeployment,
        Rpc::Rollback,
        Rpc::Promote,
        Rpc::ListRoutes,
        Rpc::GetStats,
        Rpc::CreateToken,
        Rpc::RevokeToken,
        Rpc::ListTokens,
        Rpc::ListAuditEvents,
        Rpc::CancelDeployment,
        Rpc::GetBuildLog,
        Rpc::ConnectRepository,
        Rpc::GetRepositoryConnection,
        Rpc::DisconnectRepository,
    ];

    /// The rule. Project settings (regions, custom domains) and creating
    /// projects are a deployer's: they are the workspace's own business,
    /// like deploys. Workspaces, tokens and the daemon's counters are an
    /// admin's.
    pub fn access(self) -> Access {
        match self {
            Rpc::GetWorkspace
            | Rpc::GetProject
            | Rpc::ListProjects
            | Rpc::GetDeployment
            | Rpc::ListDeployments
            | Rpc::WatchDeployment
            | Rpc::ListRoutes
            | Rpc::ListAuditEvents
            | Rpc::GetBuildLog
            | Rpc::GetRepositoryConnection => Access::Read,
            Rpc::CreateProject
            | Rpc::SetEnvironmentRegions
            | Rpc::AddCustomDomain
            | Rpc::VerifyCustomDomain
            | Rpc::RemoveCustomDomain
            | Rpc::CreateDeployment
            | Rpc::Rollback
            | Rpc::Promote
            | Rpc::CancelDeployment
            | Rpc::ConnectRepository
            | Rpc::DisconnectRepository => Access::Write,
            Rpc::CreateWorkspace
            | Rpc::GetStats
            | Rpc::CreateToken
            | Rpc::RevokeToken
            | Rpc::ListTokens => Access::Admin,
        }
    }

    /// `(service, method)` in package `deployd.v1`.
    fn service_and_method(self) -> (&'static str, &'static str) {
        match self {
            Rpc::CreateWorkspace => ("WorkspaceService", "CreateWorkspace"),
            Rpc::GetWorkspace => ("WorkspaceService", "GetWorkspace"),
            Rpc::CreateProject => ("ProjectService", "CreateProject"),
            Rpc::GetProject => ("ProjectService", "GetProject"),
            Rpc::ListProjects => ("ProjectService", "ListProjects"),
            Rpc::SetEnvironmentRegions => ("ProjectService", "SetEnvironmentRegions"),
            Rpc::AddCustomDomain => ("ProjectService", "AddCustomDomain"),
            Rpc::VerifyCustomDomain => ("ProjectService", "VerifyCustomDomain"),
            Rpc::RemoveCustomDomain => ("ProjectService", "RemoveCustomDomain"),
            Rpc::CreateDeployment => ("DeploymentService", "CreateDeployment"),
            Rpc::GetDeployment => ("DeploymentService", "GetDeployment"),
            Rpc::ListDeployments => ("DeploymentService", "ListDeployments"),
            Rpc::WatchDeployment => ("DeploymentService", "WatchDeployment"),
            Rpc::Rollback => ("DeploymentService", "Rollback"),
            Rpc::Promote => ("DeploymentService", "Promote"),
            Rpc::ListRoutes => ("RoutingService", "ListRoutes"),
            Rpc::GetStats => ("AdminService", "GetStats"),
            Rpc::CreateToken => ("TokenService", "CreateToken"),
            Rpc::RevokeToken => ("TokenService", "RevokeToken"),
            Rpc::ListTokens => ("TokenService", "ListTokens"),
            Rpc::ListAuditEvents => ("AuditService", "ListAuditEvents"),
            Rpc::CancelDeployment => ("DeploymentService", "CancelDeployment"),
            Rpc::GetBuildLog => ("DeploymentService", "GetBuildLog"),
            Rpc::ConnectRepository => ("GitHubService", "ConnectRepository"),
            Rpc::GetRepositoryConnection => ("GitHubService", "GetRepositoryConnection"),
            Rpc::DisconnectRepository => ("GitHubService", "DisconnectRepository"),
        }
    }

    /// The method name, as the audit log records it.
    pub fn name(self) -> &'static str {
        self.service_and_method().1
    }

    /// The HTTP/2 path of the method.
    pub fn path(self) -> String {
        let (service, method) = self.service_and_method();
        format!("/deployd.v1.{service}/{method}")
    }

    /// The RPC a request path names, if it has a rule.
    pub fn from_path(path: &str) -> Option<Rpc> {
        let rest = path.strip_prefix("/deployd.v1.")?;
        let (service, method) = rest.split_once('/')?;
        Rpc::ALL
            .into_iter()
            .find(|rpc| rpc.service_and_method() == (service, method))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// Fails when the proto gains a method without a rule here.
    #[test]
    fn every_method_of_the_proto_has_a_rule() {
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut methods = Vec::new();
        for file in set.file.iter().filter(|f| f.package() == "deployd.v1") {
            for service in &file.service {
                for method in &service.method {
                    methods.push(format!("/deployd.v1.{}/{}", service.name(), method.name()));
                }
            }
        }
        let missing: Vec<_> = methods
            .iter()
            .filter(|path| Rpc::from_path(path).is_none())
            .collect();
        assert!(missing.is_empty(), "methods without a rule: {missing:?}");
        assert_eq!(
            methods.len(),
            Rpc::ALL.len(),
            "rules for methods the proto lacks"
        );
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_path(&rpc.path()), Some(rpc));
        }
    }

    #[test]
    fn unknown_paths_have_no_rule() {
        for path in [
            "",
            "/",
            "/deployd.v1.DeploymentService/",
            "/deployd.v1.DeploymentService/Nope",
            "/deployd.v2.DeploymentService/Rollback",
            "/grpc.health.v1.Health/Check",
        ] {
            assert_eq!(Rpc::from_path(path), None, "{path}");
        }
    }
}
