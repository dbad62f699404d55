//! Where the analytics store is and how to reach it. The binaries' configuration
//! ([`crate::config`]) flattens these settings into its own.

use clap::Args;
use clickhouse::Client;

/// Where the analytics store is.
#[derive(Debug, Clone, Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP endpoint.
    #[arg(
        long,
        env = "TA_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,

    /// Database holding the analytics tables (created if missing).
    #[arg(long, env = "TA_CLICKHOUSE_DATABASE", default_value = "tiny_analytics")]
    pub clickhouse_database: String,

    /// ClickHouse user.
    #[arg(long, env = "TA_CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,

    /// ClickHouse password.
    #[arg(
        long,
        env = "TA_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub clickhouse_password: String,
}

impl ClickHouseArgs {
    /// A client for the analytics database.
    pub fn client(&self) -> Client {
        self.server_client()
            .with_database(&self.clickhouse_database)
    }

    /// A client without a database, for `CREATE DATABASE`.
    pub(crate) fn server_client(&self) -> Client {
        Client::default()
            .with_url(&self.clickhouse_url)
            .with_user(&self.clickhouse_user)
            .with_password(&self.clickhouse_password)
            // The crate's schema validation asks for settings that ClickHouse 18.16 does not know.
            .with_validation(false)
    }
}
