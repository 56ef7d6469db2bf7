//! Alert settings and the alerts sent, on SQLite.

use async_trait::async_trait;
use layers_domain::{MicroCredits, UserId};
use sqlx::Row;
use time::OffsetDateTime;

use super::rows::ms;
use super::SqliteStore;
use crate::error::StoreResult;
use crate::records::{parse_thresholds, thresholds_text, AlertFiring, AlertSettings};
use crate::traits::AlertStore;

#[async_trait]
impl AlertStore for SqliteStore {
    async fn alert_settings(&self, user: UserId) -> StoreResult<Option<AlertSettings>> {
        let row = sqlx::query(
            "SELECT low_balance_micros, key_thresholds, webhook_url, webhook_secret_enc FROM alert_settings \
             WHERE user_id = ?",
        )
        .bind(user.to_string())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AlertSettings {
            low_balance: row.try_get::<Option<i64>, _>("low_balance_micros")?.map(MicroCredits),
            key_thresholds: parse_thresholds(&row.try_get::<String, _>("key_thresholds")?)?,
            webhook_url: row.try_get("webhook_url")?,
            webhook_secret_enc: row.try_get("webhook_secret_enc")?,
        }))
    }

    async fn set_alert_settings(&self, user: UserId, s: &AlertSettings, at: OffsetDateTime) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO alert_settings (user_id, low_balance_micros, key_thresholds, webhook_url, webhook_secret_enc, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET \
             low_balance_micros = excluded.low_balance_micros, key_thresholds = excluded.key_thresholds, \
             webhook_url = excluded.webhook_url, webhook_secret_enc = excluded.webhook_secret_enc, \
             updated_at = excluded.updated_at",
        )
        .bind(user.to_string())
        .bind(s.low_balance.map(|m| m.0))
        .bind(thresholds_text(&s.key_thresholds))
        .bind(&s.webhook_url)
        .bind(&s.webhook_secret_enc)
        .bind(ms(at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn claim_alert(&self, f: &AlertFiring) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO alert_firings (user_id, kind, subject, period, threshold, fired_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(f.user.to_string())
        .bind(f.kind)
        .bind(&f.subject)
        .bind(&f.period)
        .bind(f.threshold)
        .bind(ms(f.at))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
