-- Deleting an account (GDPR erasure): personal data removed, the ledger and usage kept
-- de-identified. The audit log is append-only for the server's role, so its rows of the
-- account lose their address and user agent only through this function.
CREATE FUNCTION layers_erase_personal_data(p_user uuid, p_at timestamptz) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    UPDATE users SET email = 'deleted+' || p_user::text || '@deleted.invalid', password_hash = NULL,
                     email_verified_at = NULL, status = 'suspended', updated_at = p_at
    WHERE id = p_user;
    DELETE FROM sessions WHERE user_id = p_user;
    DELETE FROM email_tokens WHERE user_id = p_user;
    DELETE FROM recovery_codes WHERE user_id = p_user;
    DELETE FROM two_factor WHERE user_id = p_user;
    UPDATE audit_logs SET ip_address = NULL, user_agent = NULL WHERE user_id = p_user;
    INSERT INTO cache_events (scope, user_id) VALUES ('account', p_user);
$$;
REVOKE ALL ON FUNCTION layers_erase_personal_data(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_erase_personal_data(uuid, timestamptz) TO layers_app;
