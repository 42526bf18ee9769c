//! The GitHub tables: connected repositories (unique both ways), the last
//! commit status reported per deployment, and the outbox of deployments
//! whose status on GitHub lags behind. The outbox row is written by
//! [`deployment_written`] in the transaction that stores the deployment,
//! so what GitHub is owed is as durable as the deployment itself; the
//! status reporter (`actors::github`) drains it and settles each row with
//! `Mutation::SettleStatus`.

use std::collections::HashMap;

use redb::ReadableTable;

use super::commit_tables::CommitTables;

use super::codec::{decode, encode};
use super::tables::*;
use super::{Store, storage};
use crate::error::Error;
use crate::model::github::{CommitState, ReportedStatus, RepositoryConnection};
use crate::model::{Deployment, DeploymentId, Project, ProjectId, Source};

/// Check of `Mutation::ConnectRepository`: `Ok(Err(_))` rejects it.
pub(super) fn check_connect(
    txn: &CommitTables<'_>,
    connection: &RepositoryConnection,
) -> Result<Result<(), Error>, Error> {
    let project = connection.project_id.as_str();
    if txn
        .open_table(PROJECTS)
        .map_err(storage)?
        .get(project)
        .map_err(storage)?
        .is_none()
    {
        return Ok(Err(Error::not_found(format!(
            "project {project} not found"
        ))));
    }
    let repositories = txn.open_table(GITHUB_REPOSITORIES).map_err(storage)?;
    let key = connection.repository.key();
    if let Some(holder) = repositories.get(key.as_str()).map_err(storage)?
        && holder.value() != project
    {
        return Ok(Err(Error::AlreadyExists(format!(
            "repository {} is already connected to project {}; disconnect it there first",
            connection.repository.full_name(),
            holder.value()
        ))));
    }
    Ok(Ok(()))
}

/// Check of `Mutation::DisconnectRepository`.
pub(super) fn check_disconnect(
    txn: &CommitTables<'_>,
    project_id: &ProjectId,
) -> Result<Result<(), Error>, Error> {
    let connections = txn.open_table(GITHUB_CONNECTIONS).map_err(storage)?;
    if connections
        .get(project_id.as_str())
        .map_err(storage)?
        .is_none()
    {
        return Ok(Err(Error::not_found(format!(
            "project {project_id} has no GitHub repository connected"
        ))));
    }
    Ok(Ok(()))
}

/// Connects (or reconnects) a project, replacing its previous repository.
pub(super) fn connect(
    txn: &CommitTables<'_>,
    connection: &RepositoryConnection,
) -> Result<(), Error> {
    let project = connection.project_id.as_str();
    let previous = disconnect(txn, &connection.project_id)?;
    if let Some(previous) = previous {
        tracing::info!(project, previous = %previous.repository.full_name(), "replacing the connected repository");
    }
    txn.open_table(GITHUB_CONNECTIONS)
        .map_err(storage)?
        .insert(project, encode(connection)?.as_slice())
        .map_err(storage)?;
    txn.open_table(GITHUB_REPOSITORIES)
        .map_err(storage)?
        .insert(connection.repository.key().as_str(), project)
        .map_err(storage)?;
    Ok(())
}

/// Removes a project's connection, returning what it was. Outbox rows of
/// its deployments are dropped by the reporter when it finds no
/// connection.
pub(super) fn disconnect(
    txn: &CommitTables<'_>,
    project_id: &ProjectId,
) -> Result<Option<RepositoryConnection>, Error> {
    let mut connections = txn.open_table(GITHUB_CONNECTIONS).map_err(storage)?;
    let Some(bytes) = connections.remove(project_id.as_str()).map_err(storage)? else {
        return Ok(None);
    };
    let previous: RepositoryConnection = decode(bytes.value())?;
    drop(bytes);
    txn.open_table(GITHUB_REPOSITORIES)
        .map_err(storage)?
        .remove(previous.repository.key().as_str())
        .map_err(storage)?;
    Ok(Some(previous))
}

/// The state GitHub should show for `deployment`, if its project is
/// connected and it was built from the connected repository.
fn wanted_state(
    txn: &CommitTables<'_>,
    deployment: &Deployment,
) -> Result<Option<CommitState>, Error> {
    // Image deployments have no commit to report on: no lookup at all.
    if !matches!(deployment.source, Source::Git(_)) {
        return Ok(None);
    }
    let connections = txn.open_table(GITHUB_CONNECTIONS).map_err(storage)?;
    let Some(bytes) = connections
        .get(deployment.project_id.as_str())
        .map_err(storage)?
    else {
        return Ok(None);
    };
    let connection: RepositoryConnection = decode(bytes.value())?;
    Ok(connection
        .reports(deployment)
        .then(|| CommitState::of(deployment.status)))
}

fn reported_state(txn: &CommitTables<'_>, id: &str) -> Result<Option<CommitState>, Error> {
    let statuses = txn.open_table(GITHUB_STATUSES).map_err(storage)?;
    match statuses.get(id).map_err(storage)? {
        Some(bytes) => Ok(Some(decode::<ReportedStatus>(bytes.value())?.state)),
        None => Ok(None),
    }
}

/// Part of `PutDeployment`: puts the deployment in the outbox when GitHub
/// should show another state than it was last given.
pub(super) fn deployment_written(
    txn: &CommitTables<'_>,
    deployment: &Deployment,
) -> Result<(), Error> {
    let Some(wanted) = wanted_state(txn, deployment)? else {
        return Ok(());
    };
    let id = deployment.id.as_str();
    if reported_state(txn, id)? != Some(wanted) {
        let mut outbox = txn.open_table(GITHUB_OUTBOX).map_err(storage)?;
        if outbox.get(id).map_err(storage)?.is_none() {
            outbox.insert(id, ()).map_err(storage)?;
        }
    }
    Ok(())
}

/// `Mutation::SettleStatus`: records what GitHub was given (if anything)
/// and removes the outbox row unless the stored deployment now calls for
/// another state (it changed while the status was on its way).
pub(super) fn settle(
    txn: &CommitTables<'_>,
    deployment_id: &DeploymentId,
    reported: Option<&ReportedStatus>,
) -> Result<(), Error> {
    let id = deployment_id.as_str();
    if let Some(reported) = reported {
        txn.open_table(GITHUB_STATUSES)
            .map_err(storage)?
            .insert(id, encode(reported)?.as_slice())
            .map_err(storage)?;
    }
    let deployment = match txn
        .open_table(DEPLOYMENTS)
        .map_err(storage)?
        .get(id)
        .map_err(storage)?
    {
        Some(bytes) => Some(decode::<Deployment>(bytes.value())?),
        None => None,
    };
    let wanted = match &deployment {
        Some(deployment) => wanted_state(txn, deployment)?,
        None => None,
    };
    let owed = match wanted {
        Some(wanted) => reported_state(txn, id)? != Some(wanted),
        None => false,
    };
    if !owed {
        txn.open_table(GITHUB_OUTBOX)
            .map_err(storage)?
            .remove(id)
            .map_err(storage)?;
    }
    Ok(())
}

impl Store {
    /// The repository connected to `project_id`, if any.
    pub fn repository_connection(
        &self,
        project_id: &ProjectId,
    ) -> Result<Option<RepositoryConnection>, Error> {
        self.shared
            .guard(|| self.get_record(GITHUB_CONNECTIONS, project_id.as_str()))
    }

    /// The connection of the repository whose lower-case full name is
    /// `key`, if a project has it.
    pub fn connection_of_repository(
        &self,
        key: &str,
    ) -> Result<Option<RepositoryConnection>, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let repositories = txn.open_table(GITHUB_REPOSITORIES).map_err(storage)?;
            let Some(project) = repositories.get(key).map_err(storage)? else {
                return Ok(None);
            };
            let connections = txn.open_table(GITHUB_CONNECTIONS).map_err(storage)?;
            match connections.get(project.value()).map_err(storage)? {
                Some(bytes) => decode(bytes.value()).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Up to `limit` deployments whose commit status GitHub is owed, in
    /// id (creation time) order.
    pub fn status_outbox(&self, limit: usize) -> Result<Vec<DeploymentId>, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let outbox = txn.open_table(GITHUB_OUTBOX).map_err(storage)?;
            let mut out = Vec::new();
            for entry in outbox.iter().map_err(storage)?.take(limit) {
                let (id, _) = entry.map_err(storage)?;
                out.push(DeploymentId::parse(id.value(), "stored deployment id")?);
            }
            Ok(out)
        })
    }

    /// The last commit status reported for a deployment.
    pub fn reported_status(
        &self,
        deployment_id: &DeploymentId,
    ) -> Result<Option<ReportedStatus>, Error> {
        self.shared
            .guard(|| self.get_record(GITHUB_STATUSES, deployment_id.as_str()))
    }
}

/// Offline check (`deployd check`): the repository index and the
/// connections agree, each connection's project exists, and every outbox
/// row names a stored deployment. A file from before these tables existed
/// has none of them, which is fine.
pub(super) fn check_tables<D>(
    txn: &redb::ReadTransaction,
    projects: &HashMap<String, Project>,
    deployments: &HashMap<String, D>,
    problems: &mut Vec<String>,
) -> Result<(), Error> {
    let missing = |e: &redb::TableError| matches!(e, redb::TableError::TableDoesNotExist(_));
    let mut by_project: HashMap<String, String> = HashMap::new();
    match txn.open_table(GITHUB_CONNECTIONS) {
        Err(e) if missing(&e) => {}
        Err(e) => return Err(storage(e)),
        Ok(table) => {
            for entry in table.iter().map_err(storage)? {
                let (key, bytes) = entry.map_err(storage)?;
                let connection: RepositoryConnection = decode(bytes.value())?;
                let project = key.value().to_string();
                if !projects.contains_key(&project) || connection.project_id.as_str() != project {
                    problems.push(format!(
                        "repository {} is connected to unknown project {project}",
                        connection.repository.full_name()
                    ));
                }
                by_project.insert(project, connection.repository.key());
            }
        }
    }
    let mut indexed = 0;
    match txn.open_table(GITHUB_REPOSITORIES) {
        Err(e) if missing(&e) => {}
        Err(e) => return Err(storage(e)),
        Ok(table) => {
            for entry in table.iter().map_err(storage)? {
                let (repository, project) = entry.map_err(storage)?;
                indexed += 1;
                if by_project.get(project.value()).map(String::as_str) != Some(repository.value()) {
                    problems.push(format!(
                        "the repository index gives {} to project {}, whose connection says otherwise",
                        repository.value(),
                        project.value()
                    ));
                }
            }
        }
    }
    if indexed != by_project.len() {
        problems.push(format!(
            "{} repository connections but {indexed} entries in the repository index",
            by_project.len()
        ));
    }
    match txn.open_table(GITHUB_OUTBOX) {
        Err(e) if missing(&e) => {}
        Err(e) => return Err(storage(e)),
        Ok(table) => {
            for entry in table.iter().map_err(storage)? {
                let (id, _) = entry.map_err(storage)?;
                if !deployments.contains_key(id.value()) {
                    problems.push(format!(
                        "the GitHub status outbox lists unknown deployment {}",
                        id.value()
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::store::Mutation;
    use crate::model::github::RepositoryName;
    use crate::model::{
        DeploymentStatus, GitSource, NewDeployment, Project, Workspace, WorkspaceId,
    };

    const CLONE_URL: &str = "https://github.com/acme/web.git";

    async fn connected_project(store: &Store) -> Project {
        let workspace = Workspace {
            id: WorkspaceId::generate(),
            slug: "acme".into(),
            name: "Acme".into(),
            created_at: 0,
        };
        let project = Project::new(&workspace, "web".into(), "Web".into(), 0);
        let connection = RepositoryConnection {
            project_id: project.id.clone(),
            repository: RepositoryName::parse("acme/web", "repository").unwrap(),
            clone_url: CLONE_URL.into(),
            context_path: String::new(),
            dockerfile_path: String::new(),
            connected_at: 0,
        };
        // A submission's checks run before its writes: one step each.
        for mutation in [
            Mutation::CreateWorkspace(workspace),
            Mutation::CreateProject {
                project: project.clone(),
                reserve: Vec::new(),
            },
            Mutation::ConnectRepository(connection),
        ] {
            store.commit(vec![mutation]).await.unwrap();
        }
        project
    }

    fn deployment(project: &Project, sequence: u64, repository: Option<&str>) -> Deployment {
        let source = match repository {
            Some(repository) => Source::Git(GitSource {
                repository: repository.into(),
                commit_sha: "0123456789abcdef0123456789abcdef01234567".into(),
                context_path: String::new(),
                dockerfile_path: String::new(),
            }),
            None => Source::Image("nginx:1".into()),
        };
        let request = NewDeployment {
            environment: "production".into(),
            branch: "main".into(),
            source,
            git_commit: None,
            command: Vec::new(),
            port: 8080,
        };
        Deployment::new(project.id.clone(), sequence, request, 0)
    }

    fn reported(state: CommitState) -> Option<ReportedStatus> {
        Some(ReportedStatus {
            state,
            accepted: true,
            at: 0,
        })
    }

    #[tokio::test]
    async fn the_outbox_holds_what_github_is_owed_until_it_has_it() {
        let (store, _writer) = Store::in_memory().unwrap();
        let project = connected_project(&store).await;
        let mut git = deployment(&project, 1, Some(CLONE_URL));
        let image = deployment(&project, 2, None);
        let elsewhere = deployment(&project, 3, Some("https://example.com/other.git"));
        let put = |d: &Deployment| Mutation::PutDeployment(d.clone());
        store
            .commit(vec![put(&git), put(&image), put(&elsewhere)])
            .await
            .unwrap();
        // Only the deployment from the connected repository is owed.
        assert_eq!(store.status_outbox(10).unwrap(), vec![git.id.clone()]);

        let settle = |state| Mutation::SettleStatus {
            deployment_id: git.id.clone(),
            reported: reported(state),
        };
        store
            .commit(vec![settle(CommitState::Pending)])
            .await
            .unwrap();
        assert!(store.status_outbox(10).unwrap().is_empty());
        // Another pending step owes nothing new.
        git.status = DeploymentStatus::Deploying;
        store.commit(vec![put(&git)]).await.unwrap();
        assert!(store.status_outbox(10).unwrap().is_empty());

        git.status = DeploymentStatus::Ready;
        store.commit(vec![put(&git)]).await.unwrap();
        assert_eq!(store.status_outbox(10).unwrap(), vec![git.id.clone()]);
        // A pending status that arrives late does not settle the success.
        store
            .commit(vec![settle(CommitState::Pending)])
            .await
            .unwrap();
        assert_eq!(store.status_outbox(10).unwrap(), vec![git.id.clone()]);
        store
            .commit(vec![settle(CommitState::Success)])
            .await
            .unwrap();
        assert!(store.status_outbox(10).unwrap().is_empty());
        assert_eq!(
            store.reported_status(&git.id).unwrap().map(|r| r.state),
            Some(CommitState::Success)
        );
    }

    #[tokio::test]
    async fn a_repository_belongs_to_one_project() {
        let (store, _writer) = Store::in_memory().unwrap();
        let first = connected_project(&store).await;
        let workspace = Workspace {
            id: WorkspaceId::generate(),
            slug: "beta".into(),
            name: "Beta".into(),
            created_at: 0,
        };
        let second = Project::new(&workspace, "site".into(), "Site".into(), 0);
        for mutation in [
            Mutation::CreateWorkspace(workspace),
            Mutation::CreateProject {
                project: second.clone(),
                reserve: Vec::new(),
            },
        ] {
            store.commit(vec![mutation]).await.unwrap();
        }
        let mut connection = store.repository_connection(&first.id).unwrap().unwrap();
        connection.project_id = second.id.clone();
        connection.repository = RepositoryName::parse("ACME/Web", "repository").unwrap();
        let refused = store
            .commit(vec![Mutation::ConnectRepository(connection.clone())])
            .await
            .unwrap_err();
        assert!(matches!(refused, Error::AlreadyExists(_)), "{refused:?}");
        assert!(store.repository_connection(&second.id).unwrap().is_none());

        store
            .commit(vec![Mutation::DisconnectRepository {
                project_id: first.id.clone(),
            }])
            .await
            .unwrap();
        assert!(
            store
                .connection_of_repository("acme/web")
                .unwrap()
                .is_none()
        );
        store
            .commit(vec![Mutation::ConnectRepository(connection)])
            .await
            .unwrap();
        assert_eq!(
            store
                .connection_of_repository("acme/web")
                .unwrap()
                .map(|c| c.project_id),
            Some(second.id)
        );
    }
}
