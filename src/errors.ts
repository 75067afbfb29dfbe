/**
 * Every error and warning code cefd can attach to an event, a dead letter, a log line
 * or a metric label. Codes are stable strings: consumers filter on them, so a code is
 * never renamed or reused for something else. `test/docs.test.ts` keeps this table,
 * docs/error-codes.md and the README's list of codes in step.
 *
 * - `level: 'error'`: the frame did not become an event (dead letter), or an event was
 *   kept but part of it could not be read, or the daemon could not do its job.
 * - `level: 'warning'`: the event was kept whole; something about it is worth knowing.
 */
export interface CodeInfo {
  readonly level: 'error' | 'warning';
  /** Where the code comes from. */
  readonly stage: 'framing' | 'decode' | 'syslog' | 'cef' | 'normalizer' | 'ksc' | 'sql' | 'encode' | 'output' | 'daemon';
  readonly description: string;
}

export const CODES = {
  // framing (src/codecs/framing)
  frame_truncated: {
    level: 'warning',
    stage: 'framing',
    description:
      'An LF-terminated frame was longer than the listener\'s `max_frame_bytes`: its first `max_frame_bytes` bytes became the event (flagged `truncated`), the rest up to the next LF was discarded and counted.',
  },
  frame_incomplete: {
    level: 'warning',
    stage: 'framing',
    description:
      'The stream ended inside an octet-counted frame: the bytes received were emitted as a frame flagged `truncated`.',
  },
  octet_count_too_large: {
    level: 'warning',
    stage: 'framing',
    description:
      'A frame began like an RFC 6587 octet count (`LEN SP`) but LEN was larger than the listener\'s `max_frame_bytes`, so it was read as an LF-terminated frame instead (the digits are part of the message).',
  },
  // decode (src/codecs/decode.ts)
  invalid_utf8: {
    level: 'warning',
    stage: 'decode',
    description:
      'The frame was not valid UTF-8: text was decoded with U+FFFD replacement and the exact bytes are kept in `rawBase64`.',
  },
  unparseable: {
    level: 'error',
    stage: 'decode',
    description:
      'The frame has neither a readable syslog header nor a CEF record: it is not an event and goes to the dead-letter output with its raw bytes.',
  },
  // syslog (src/codecs/syslog)
  not_cef: {
    level: 'warning',
    stage: 'syslog',
    description:
      'The frame has a readable syslog header but no CEF record: the event carries `syslog` and the text in `message` (KSC\'s "Syslog" export format is such a frame).',
  },
  syslog_bad_header: {
    level: 'warning',
    stage: 'syslog',
    description:
      'The frame began like a syslog header (`<PRI>` or an RFC 5424 version) that could not be read: the whole frame after what was read is the message.',
  },
  syslog_bad_structured_data: {
    level: 'warning',
    stage: 'syslog',
    description:
      'RFC 5424 structured data could not be read (unterminated element or parameter): header fields are kept, the text from the structured data on is the message.',
  },
  syslog_duplicate_param: {
    level: 'warning',
    stage: 'syslog',
    description:
      'An RFC 5424 structured-data parameter appears twice in one element (or in two elements with the same SD-ID): the last value is kept in `syslog.structuredData`, the earlier one is in the warning\'s message (its first 200 characters).',
  },
  syslog_bad_timestamp: {
    level: 'warning',
    stage: 'syslog',
    description: 'The syslog timestamp could not be converted; `syslog.timestamp` is null (as for a header without one).',
  },
  // CEF (src/codecs/cef), docs/reference/cef-policy.md rows
  cef_bad_version: {
    level: 'error',
    stage: 'cef',
    description: 'The CEF version after `CEF:` is not digits (POLICY row 2): the event is kept, `cef.version` as written.',
  },
  cef_incomplete_header: {
    level: 'error',
    stage: 'cef',
    description:
      'The CEF header has fewer than 7 fields (POLICY row 5): the event is kept, missing header fields are absent.',
  },
  cef_bad_severity: {
    level: 'warning',
    stage: 'cef',
    description:
      'The CEF severity is neither an integer 0-10 nor Unknown, Low, Medium, High, Very-High (POLICY row 6): kept as written.',
  },
  cef_bad_field: {
    level: 'warning',
    stage: 'cef',
    description:
      'An extension value of a typed key (IP address, integer, long, time stamp) is empty or does not convert (POLICY rows 11, 15): kept in `cef.extensions`, left out of `cef.typed`.',
  },
  cef_duplicate_key: {
    level: 'warning',
    stage: 'cef',
    description: 'An extension key appears twice (compared by full name); the last value wins (POLICY row 12).',
  },
  cef_custom_field_unpaired: {
    level: 'warning',
    stage: 'cef',
    description:
      'A custom field (csN, cnN, cfpN, c6aN, flexStringN, flexNumberN, flexDateN, deviceCustomDateN) has a value without its Label or a Label without its value (POLICY row 16).',
  },
  cef_unparsed_extension: {
    level: 'warning',
    stage: 'cef',
    description: 'Extension text that is not a `key=value` pair (POLICY row 18); the text is in the warning message.',
  },
  warnings_left_out: {
    level: 'warning',
    stage: 'decode',
    description:
      'The event had more than 32 warnings: the first 32 are listed, this last one counts the rest per code in its message (src/codecs/warning-cap.ts). Metrics count the warnings the event lists, this one included.',
  },
  // normalizers (src/pipeline/normalize.ts, normalizers/)
  normalizer_failed: {
    level: 'warning',
    stage: 'normalizer',
    description:
      'A normalizer threw: the error was caught and counted and the event passes on un-normalized.',
  },
  ksc_unpaired_value: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A KSC custom-field value (csN, cnN, flexStringN, cfpN, deviceCustomDateN, ...) arrived without its Label, or with an empty one: kept in `ksc.labels` under the slot\'s CEF full name (`deviceCustomString5`).',
  },
  ksc_unpaired_label: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A KSC custom-field Label arrived without its value: nothing goes into `ksc.labels`; the label text is in the warning message.',
  },
  ksc_duplicate_label: {
    level: 'warning',
    stage: 'ksc',
    description:
      'Two KSC custom fields carry the same Label: the lowest slot wins (cs, cn, cfp, c6a, flexString, flexNumber, flexDate, deviceCustomDate, then by number, whatever the arrival order); each other value is kept in `ksc.labels` under `Label#slot` (`TaskName#deviceCustomString10`).',
  },
  ksc_unknown_state: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A task-state code outside KSC\'s 0-7 KLPRCI table (for instance 8, 16, 64 from the host task bitmask): the state is `unknown` and the code is kept. A state that is not an integer, or an integer beyond 2^53 (out of range), is also `unknown`, without a code (the text stays in `ksc.labels`).',
  },
  ksc_bad_number: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A KSC numeric value does not read as one: a cnN or flexNumberN label value or the CEF severity that is not an integer, an attack port that is not an integer 0-65535, an attack IPv4 address that is neither dotted (four octets 0-255) nor a 32-bit decimal. Kept as text in `ksc.labels` / `ksc.params`, left out of the derived field (an attack address or port then comes from `src`, `dst`, `dpt` or `hip`).',
  },
  ksc_no_structured_data: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A KSC "Syslog" line (APP-NAME `<product>|<version>`) without its `[event@23668 ...]` element, as after a relay with an RFC 3164 template: only product, host, the MSGID if any and the message text are known.',
  },
  // encoders (src/codecs/encoders/): what an encoding could not carry; counted per encoder
  encode_key_dropped: {
    level: 'warning',
    stage: 'encode',
    description:
      'The `cef` encoding cannot write an extension key outside CEF\'s key characters (`[A-Za-z0-9_][A-Za-z0-9_.,[\\]-]*`), as a user normalizer may make; the `ecs` encoding cannot write a key of `cef.extensions` or `kaspersky.ksc.labels` that Elasticsearch cannot map (an empty part between dots, `x.` or `a..b`; `a.b` beside `a`), for which it would refuse the whole document: the key and its value are left out of the record and counted.',
  },
  encode_field_cut: {
    level: 'warning',
    stage: 'encode',
    description:
      'The `kuma` encoding cut a value to KUMA\'s length limit for its field (`ApplicationProtocol` 31 characters, addresses 45, host names 1023, ...): the record carries the first characters, and the cut is counted. The `cef` encoding left out the trailing spaces or TABs of an extension value (a KSC "Syslog" parameter such as `gn="Group "`): CEF has no escape for them and every receiver trims them.',
  },
  encode_value_moved: {
    level: 'warning',
    stage: 'encode',
    description:
      'The `kuma` encoding could not write a value in its typed field (a Number field is int64: an integer beyond 2^53, `1e3` or `12.5` in `spt`/`cnN`; `cfpN` is a decimal number; a time field takes milliseconds of a time stamp cefd converted): KUMA would refuse the whole event, so the value goes to `Extra` as written (under its full name, or a custom field\'s label), and is counted.',
  },
  encode_key_renamed: {
    level: 'warning',
    stage: 'encode',
    description:
      'The `kuma` encoding writes each `Extra` key once. A label on several custom fields is written as the ksc normalizer names it (`ksc_duplicate_label`): the lowest slot keeps the label, another slot goes under `<label>#<fullName>` (`GroupName#deviceCustomString10`). A key already taken (an unknown extension key named like a label, a label or key named like one cefd derives for KSC events, `KscCategory`) goes under `<key>#<where from>` (`#extension`, `#syslog`, `#structuredData`, or the custom field\'s full name), then `#2`, `#3`, ... The value is kept under the new key, and counted.',
  },
  // outputs and queues (src/pipeline/output-runner.ts, src/outputs/): reasons of rejected,
  // dropped and dead-lettered events, as in `reason` of dead letters and metric labels
  'http_status_<NNN>': {
    level: 'error',
    stage: 'output',
    description:
      'The http output got a status that is neither success nor retryable (a 4xx other than 408, 425, 429, 401, 403, 404 and 405): the batch is rejected and its events go to the dead-letter output with this reason (`http_status_400`, `http_status_422`, ...). 401 and 403 (credentials), 404, 405 and an unfollowed 3xx (a wrong `url`) are the output\'s configuration, not the events: retried no sooner than 10 s apart, never dead-lettered. `http_status_413` (the http, elasticsearch, splunk_hec and clickhouse outputs): one event alone is larger than the receiver takes; a larger batch answered 413 is split in halves first.',
  },
  'elasticsearch_<error type>': {
    level: 'error',
    stage: 'output',
    description:
      'The elasticsearch output: the cluster refused one event of a `_bulk` request for good (a 4xx item other than 409 and 429: `elasticsearch_document_parsing_exception` / `elasticsearch_mapper_parsing_exception` for a mapping conflict, `elasticsearch_invalid_index_name_exception`, ...): that event alone goes to the dead-letter output with the cluster\'s reason (docs/outputs-elasticsearch.md). Item errors of the cluster\'s or cefd\'s configuration (401/403, a missing ingest pipeline, `index_not_found_exception`, `index_closed_exception`, an alias without a write index) are retried no sooner than 10 s apart instead, never dead-lettered.',
  },
  'splunk_hec_<error>': {
    level: 'error',
    stage: 'output',
    description:
      'The splunk_hec output: HEC refused events for good with a 400 and its code (`splunk_hec_invalid_data_format` code 6, `splunk_hec_event_field_required` 12, `splunk_hec_event_field_blank` 13, `splunk_hec_no_data` 5, `splunk_hec_indexed_fields` 15, `splunk_hec_code_<n>` for other codes 0-999; code 7, the index not allowed for the token, is configuration and retried): the event HEC names (`invalid-event-number`), or the batch, goes to the dead-letter output (docs/outputs-splunk.md).',
  },
  clickhouse_row_rejected: {
    level: 'error',
    stage: 'output',
    description:
      'ClickHouse refused this row with a data error (it cannot parse or convert a value for its column): the clickhouse output split the batch until the row stood alone, and dead-letters it with the server\'s text; the other rows were inserted (docs/outputs-clickhouse.md).',
  },
  clickhouse_record_not_json: {
    level: 'error',
    stage: 'output',
    description: 'The clickhouse output got an encoded event that is not a JSON object, so it cannot become a JSONEachRow row: dead-lettered.',
  },
  stdout_closed: {
    level: 'error',
    stage: 'output',
    description: 'Standard output can no longer be written (EPIPE, closed): the stdout output rejects its batches (dead-lettered).',
  },
  syslog_message_too_big: {
    level: 'error',
    stage: 'output',
    description:
      'The syslog output cannot send a record whose message (header and record) is larger than its `max_message_size` (over UDP at most 65507 bytes, one datagram): that record alone goes to the dead-letter output with this reason.',
  },
  syslog_record_has_newline: {
    level: 'error',
    stage: 'output',
    description:
      'The syslog output with `framing: lf` cannot send a record holding a newline (the receiver would read two messages): that record alone goes to the dead-letter output with this reason; `framing: octet` carries it.',
  },
  syslog_record_has_nul: {
    level: 'error',
    stage: 'output',
    description:
      'The syslog output with `framing: lf` cannot send a record holding a NUL byte (a CEF record of a frame that carried one: CEF has no escape for it): receivers that end a message at NUL as well as LF (cefd, KUMA\'s `\\0` delimiter) would read two messages. That record alone goes to the dead-letter output with this reason; `framing: octet` carries it.',
  },
  nats_max_payload: {
    level: 'error',
    stage: 'output',
    description: 'The nats output: an event is larger than the NATS server\'s `max_payload`; it is rejected alone and goes to the dead-letter output (the rest of its batch is published).',
  },
  nats_not_a_frame: {
    level: 'error',
    stage: 'output',
    description: 'The nats output with `payload: frame` got a record that is not a receiver\'s raw frame (cefd is not in `mode: receiver`); it goes to the dead-letter output.',
  },
  nats_permission_denied: {
    level: 'error',
    stage: 'output',
    description: 'The nats output: the server refused the publish for want of permission on the subject (the account\'s `publish` permissions). The subject is the output\'s, so the configuration is wrong, not the events: retried no sooner than 10 s apart with this code in the retry log, never dead-lettered; fix the permissions (or `subject`) and the events in the buffer go out.',
  },
  nats_refused: {
    level: 'error',
    stage: 'output',
    description: 'The nats output: JetStream refused the message for itself with a 4xx PubAck error (e.g. 400/10054: larger than the stream\'s `max_msg_size`; a sealed stream), or with 503/10077 "maximum bytes exceeded" for a message larger than the stream\'s whole `max_bytes` (`discard: new`: it would not fit in the empty stream); sending it again would be refused again, so it goes to the dead-letter output with the code and err_code in the error. Any other 503 (a full stream with `discard: new` the message fits in once there is room, no quorum) is retried.',
  },
  nats_consumer_mismatch: {
    level: 'error',
    stage: 'daemon',
    description:
      'A `nats` listener: its durable `consumer` exists with another `filter_subject` than the listener\'s (none where one is configured, or another subject), e.g. made by a processor of another partition. Reading from it would take other subjects\' messages or miss some, so the listener reads nothing: it is not ready (`/readyz` names it), logs this error and looks at the consumer again every 5 s. Give the listener its own consumer name, or delete the consumer (`nats consumer rm <stream> <consumer>`) so that it is made again with the listener\'s filter.',
  },
  file_fsync_failed: {
    level: 'error',
    stage: 'output',
    description:
      'The file output with `fsync: interval`: an fsync failed, so the records written since the last good fsync, already reported delivered, may not be on disk. They are counted in `cefd_output_dropped_events_total{reason="file_fsync_failed"}` and logged (error) when the next batch is sent or the output closes; that batch itself is written as usual, not retried.',
  },
  syslog_unconfirmed: {
    level: 'warning',
    stage: 'output',
    description:
      'The syslog output (tcp/tls) closed (stop, reload) and the receiver did not close its side within `write_timeout` (at most 5 s), or the connection was broken: the messages of its resend window were not confirmed and may not have arrived. They are counted in `cefd_output_dropped_events_total{reason="syslog_unconfirmed"}` and logged as a warning.',
  },
  queue_full: {
    level: 'error',
    stage: 'output',
    description: 'An output queue with `when_full: drop_newest` was full: the event was dropped and counted.',
  },
  queue_hard_limit: {
    level: 'error',
    stage: 'output',
    description:
      'A `block` output queue reached twice its capacity with events from a source that cannot be paused (UDP): the event was dropped and counted.',
  },
  shutdown_undelivered: {
    level: 'error',
    stage: 'daemon',
    description: 'At shutdown an output did not drain within `shutdown_timeout`: its queued events were not delivered (counted and logged).',
  },
  reload_undelivered: {
    level: 'error',
    stage: 'daemon',
    description: 'An output with a memory queue, removed or changed by a reload, did not drain within `shutdown_timeout`: its queued events were not delivered (counted and logged). A disk buffer keeps what it did not deliver (`buffer_orphaned`).',
  },
  config_reload_failed: {
    level: 'error',
    stage: 'daemon',
    description:
      'A configuration reload (SIGHUP) failed: the file does not load or check, a listener, output, SQL source or the metrics endpoint of the new configuration cannot start, or the change needs a restart (`reason: restart_needed`: a new `state_dir`, a first `stdout` output while the logs go to stdout). The log line says why; the daemon keeps running the configuration it ran before (docs/configuration.md#reloading-sighup), and `cefd_config_reloads_total{result="failed"}` counts it. When the KSC admin API cannot listen on its new address, or a TLS listener\'s files changed after the check, the rest of the new configuration is applied and the line says so.',
  },
  config_restart_needed: {
    level: 'warning',
    stage: 'daemon',
    description:
      'A reload applied a configuration that changes a setting only a restart applies: `decode_workers` (or a `mode` change that starts or leaves out decode worker threads), or the removal of the last `stdout` output (the logs stay on stderr). One line per setting with `key`, `from` and `to`; the rest is applied (docs/configuration.md#reloading-sighup).',
  },
  worker_failed: {
    level: 'error',
    stage: 'decode',
    description:
      'A decode worker thread died (or cefd stopped) before it decoded a read: the frames of that read go to the dead-letter output with their raw bytes.',
  },
  event_unserializable: {
    level: 'error',
    stage: 'normalizer',
    description:
      'A normalizer put something in the event that JSON cannot hold (a BigInt, a cycle): the frame goes to the dead-letter output with its raw bytes.',
  },
  frame_timeout: {
    level: 'error',
    stage: 'framing',
    description:
      'A TCP/TLS sender began a frame and did not end it within `frame_timeout` (a slowloris connection): the bytes received go to the dead-letter output, flagged truncated, and the connection is closed (counted in cefd_connections_rejected_total, reason frame_timeout).',
  },
  frame_incomplete_at_close: {
    level: 'warning',
    stage: 'framing',
    description:
      'A connection closed without an orderly end (a reset, a fatal TLS error such as a bad record MAC: the connection is closed then) in the middle of a frame, or closed (even in an orderly way) right after an octet count, before any byte of its frame: the bytes received, an octet count included, go to the dead-letter output with this reason. `cefd parse` reports an input (file or stdin) that ends right after an octet count the same way (a failure record with the count as `raw`; exit 1).',
  },
  // TLS listeners (src/sources/tcp/): the `code` of a refused connection's log line
  tls_handshake_failed: {
    level: 'warning',
    stage: 'daemon',
    description: 'A TLS handshake failed for a reason not listed below; the log line\'s `cause` has the OpenSSL/Node error code (e.g. `ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE`). Counted as `tls_handshake`.',
  },
  tls_handshake_timeout: {
    level: 'warning',
    stage: 'daemon',
    description: 'A client did not finish the TLS handshake within `tls.handshake_timeout`. Counted as `tls_handshake`.',
  },
  tls_no_shared_cipher: {
    level: 'warning',
    stage: 'daemon',
    description: 'The client offered no cipher suite the listener accepts (by default TLS 1.2 takes ECDHE with AEAD only; see `tls.ciphers`). Counted as `tls_handshake`.',
  },
  tls_on_plain_listener: {
    level: 'warning',
    stage: 'daemon',
    description: 'A client began a TLS handshake on a plain `tcp` listener (its sender is set up for TLS, the listener is not, or the port is wrong): the connection is closed at once, instead of its handshake bytes becoming dead letters while the client waits. Counted as `tls_on_plain_listener`.',
  },
  tls_certificate_expiring: {
    level: 'warning',
    stage: 'daemon',
    description: 'A TLS listener\'s own certificate has expired or expires within 14 days (at start and at every SIGHUP): clients refuse an expired one. Install a renewed certificate and send SIGHUP; `cefd_tls_certificate_expiry_timestamp_seconds{listener}` shows the expiry of the one installed.',
  },
  tls_key_readable_by_others: {
    level: 'warning',
    stage: 'daemon',
    description: 'A TLS listener\'s private key file is not encrypted and is readable by every user of the host (mode o+r): anyone there can impersonate the listener. Logged at start and at every SIGHUP; `chmod o-r` the file (0600, or 0640 with cefd\'s group).',
  },
  tls_certificate_revoked: {
    level: 'warning',
    stage: 'daemon',
    description: 'The client certificate is listed in a CRL of `tls.crl_file`; the connection is reset. Counted as `tls_unauthorized`.',
  },
  tls_crl_unusable: {
    level: 'warning',
    stage: 'daemon',
    description: 'The client certificate could not be checked for revocation: `tls.crl_file` has no CRL of a CA in its chain, or that CRL is past its next update (or not valid yet, or badly signed). Fails closed: the connection is reset. Counted as `tls_unauthorized`; publish a fresh CRL and reload.',
  },
  tls_protocol_version: {
    level: 'warning',
    stage: 'daemon',
    description: 'The client spoke an older TLS version than `tls.min_version`, or not TLS at all (plain TCP or HTTP on the TLS port). Counted as `tls_handshake`.',
  },
  tls_no_client_certificate: {
    level: 'warning',
    stage: 'daemon',
    description: 'The listener requires a client certificate (`client_auth: required` or pinned fingerprints) and the client presented none; the connection is reset. Counted as `tls_unauthorized` or `tls_fingerprint`.',
  },
  tls_fingerprint_not_allowed: {
    level: 'warning',
    stage: 'daemon',
    description: 'The client certificate\'s SHA-256 fingerprint (in the log line) is not one of `tls.client_fingerprints`; the connection is reset. Counted as `tls_fingerprint`.',
  },
  tls_unknown_ca: {
    level: 'warning',
    stage: 'daemon',
    description: 'The client certificate does not chain to `tls.ca_file` (or is self-signed); the connection is reset. Counted as `tls_unauthorized`.',
  },
  tls_certificate_expired: {
    level: 'warning',
    stage: 'daemon',
    description: 'The client certificate has expired, also when its fingerprint is pinned (unless `allow_insecure_pinned_certificates`); the connection is reset. Counted as `tls_unauthorized`.',
  },
  tls_certificate_not_yet_valid: {
    level: 'warning',
    stage: 'daemon',
    description: 'The client certificate is not valid yet (its start date is in the future); the connection is reset. Counted as `tls_unauthorized`.',
  },
  tls_weak_client_key: {
    level: 'warning',
    stage: 'daemon',
    description: 'The client certificate\'s key is below today\'s minimums (RSA/DSA under 2048 bits, EC under P-256), also when pinned (unless `allow_insecure_pinned_certificates`); the connection is reset. Counted as `tls_unauthorized`.',
  },
  tls_certificate_invalid: {
    level: 'warning',
    stage: 'daemon',
    description: 'The client certificate failed verification for another reason (Node\'s code in the log line, e.g. `CERT_SIGNATURE_FAILURE`); the connection is reset. Counted as `tls_unauthorized`.',
  },
  // disk buffers (src/buffer/inventory.ts): a log line's `code`
  buffer_orphaned: {
    level: 'warning',
    stage: 'daemon',
    description:
      'At start or after a reload, a disk buffer (`state_dir/buffers/<output>/`) or a stop\'s spill file (`state_dir/shutdown-spill/<output>.ndjson`) holds undelivered events of an output the configuration no longer has (removed, renamed, or switched to `buffer.type: memory`): nothing delivers them. Logged once per buffer with its records and bytes, and exported as `cefd_buffer_orphaned_bytes`. Add the output back under that name to deliver them, or list and delete them with `cefd buffers` / `cefd buffers drop <output>` (docs/reliability.md).',
  },
  // state directory (src/state-dir.ts): the `code` of the daemon's fatal log line
  state_dir_locked: {
    level: 'error',
    stage: 'daemon',
    description:
      'Another process holds the lock of `state_dir` (`state_dir/cefd.lock`): a second cefd on the same state directory does not start (exit 1; the log line names the holder\'s pid), a reload that moves to such a folder is refused, and `cefd buffers drop` refuses while cefd runs. The lock goes with the process that held it, even after a crash (docs/operations.md#one-daemon-per-state-directory).',
  },
  // metrics endpoint (src/telemetry/http.ts): the body of a refusal and the `code` of its log line
  metrics_rate_limited: {
    level: 'warning',
    stage: 'daemon',
    description:
      'The metrics endpoint (with `metrics.bearer_token`): too many wrong bearer tokens from the client address (5 free, then waits of 1 s doubling up to 15 min, as the admin API); the token is not looked at until the wait is over (status 429 with `Retry-After`). Other addresses, and requests without a token, are not affected (docs/operations.md#metrics-and-health).',
  },
  // KSC integration (src/ksc/): KscError codes, response-rule outcomes, admin API (src/admin/) errors
  ksc_auth_failed: {
    level: 'error',
    stage: 'ksc',
    description:
      'KSC refused the login (HTTP 401/403 on login or StartSession): wrong user name or password. cefd does not try again for 60 s, so it cannot lock the account. Admin API status 502.',
  },
  ksc_session_rejected: {
    level: 'error',
    stage: 'ksc',
    description:
      'A KSC call was refused with 401/403 even right after a fresh login: the KSC user lacks the rights for it. Admin API status 502.',
  },
  ksc_pxg_error: {
    level: 'error',
    stage: 'ksc',
    description:
      'KSC answered a call with a `PxgError` (code, module and message in the text), e.g. access denied for RunTask. Never retried. Admin API status 502.',
  },
  ksc_http_error: {
    level: 'error',
    stage: 'ksc',
    description:
      'KSC answered with an HTTP status that is neither success nor an auth refusal (5xx after the retries). Admin API status 502.',
  },
  ksc_transport_error: {
    level: 'error',
    stage: 'ksc',
    description:
      'The connection to KSC failed (refused, reset, DNS), or no connection was free for a call within `ksc.request_timeout` (it waited behind an earlier call whose answer is still awaited): that call was not sent, and a task start it belonged to did not start the task. Admin API status 502.',
  },
  ksc_timeout: {
    level: 'error',
    stage: 'ksc',
    description:
      'KSC did not answer within `ksc.request_timeout` a call that was sent, so KSC may have acted on it (a task start that timed out in `Tasks.RunTask` may have started the task; its claim is kept). Admin API status 504.',
  },
  ksc_tls_error: {
    level: 'error',
    stage: 'ksc',
    description:
      'The KSC server certificate was not trusted: CA verification failed or the SHA-256 pin did not match. Nothing was sent. Admin API status 502.',
  },
  ksc_protocol_error: {
    level: 'error',
    stage: 'ksc',
    description:
      "An answer from KSC that is not the Open API's JSON. Admin API status 502.",
  },
  ksc_invalid_input: {
    level: 'error',
    stage: 'ksc',
    description:
      'Bad input to the KSC integration (connection name, URL, pin, secret, task list, API request field): nothing was changed. Admin API status 400; CLI exit 64.',
  },
  ksc_not_found: {
    level: 'error',
    stage: 'ksc',
    description:
      'No such KSC tenant, connection, asset, task run or response rule. Admin API status 404.',
  },
  ksc_conflict: {
    level: 'error',
    stage: 'ksc',
    description:
      'A KSC connection with that name already exists in the tenant. Admin API status 409.',
  },
  ksc_disabled: {
    level: 'warning',
    stage: 'ksc',
    description:
      "The KSC connection is disabled, or its tenant's KSC integration is off: no import, no task start. Admin API status 409.",
  },
  ksc_no_secret: {
    level: 'error',
    stage: 'ksc',
    description:
      'The KSC connection has no secret (neither in the secrets file nor in the credential file). Admin API status 409.',
  },
  ksc_secret_required: {
    level: 'error',
    stage: 'ksc',
    description:
      "Refused through the admin API or the console: a change of a KSC connection's server or TLS settings without its secret in the same change, or adding, renaming or moving a connection that would take its secret from the credential file. Admin API status 409; the command line may make these changes.",
  },
  ksc_task_not_applicable: {
    level: 'warning',
    stage: 'ksc',
    description:
      "No task of the list applies to the asset (not a KUMA* task of its connection, another product or platform, the asset outside the task's scope, or the asset archived): nothing was started. Admin API status 409.",
  },
  ksc_task_running: {
    level: 'warning',
    stage: 'ksc',
    description:
      'The task is already requested or running for the asset: not started again (response rules count it as `skipped_running`). Admin API status 409.',
  },
  ksc_task_cooldown: {
    level: 'warning',
    stage: 'ksc',
    description:
      "The task started for the asset less than the rule's `cooldown` ago: not started again (`skipped_cooldown`).",
  },
  ksc_rule_queue_full: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A response rule\'s queue (`queue_max`) was full: the trigger was dropped, counted (`cefd_ksc_task_starts_total{result="dropped"}`) and logged (rate-limited).',
  },
  ksc_rule_dropped_at_stop: {
    level: 'warning',
    stage: 'ksc',
    description:
      'At shutdown or when a reload replaced a response rule, triggers still waiting in its queue were dropped (counted as `dropped`).',
  },
  ksc_task_state_failed: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A KSC task-state event could not update the task runs (the state store failed); the event itself goes on to the outputs.',
  },
  ksc_untrusted_origin: {
    level: 'warning',
    stage: 'ksc',
    description:
      'An event that would have triggered a response rule or updated task runs came from an origin no KSC connection trusts (`ksc.trusted_sources`: listener, source address, TLS client fingerprint). It was collected and delivered as usual but acted on nothing; counted in `cefd_ksc_untrusted_events_total{kind}` and logged once per kind and listener. Also logged at start when response rules exist and `ksc.trusted_sources` is empty. See docs/ksc-trust.md.',
  },
  ksc_task_run_deleted: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A KSC task start finished (succeeded or failed, as the log line says) after its connection was deleted, or its tenant deleted with `force`, while RunTask was under way: the task run went with the connection, so the outcome is not recorded as a run; the start itself answers with its real outcome. Logged as a warning.',
  },
  ksc_task_duplicate: {
    level: 'warning',
    stage: 'ksc',
    description:
      'Processors sharing KSC work (docs/cluster.md): a response rule\'s start for this rule and event was already made, by this or another processor (the event was delivered again after a processor died before acknowledging it): not started again (`skipped_duplicate`). Logged as a warning when the processor that claimed it stopped before KSC answered its RunTask (KSC may or may not have started the task then).',
  },
  ksc_not_owner: {
    level: 'warning',
    stage: 'ksc',
    description:
      'Processors sharing KSC work: this processor no longer holds the lease of the KSC connection (it lost it between taking the work and starting the task): the start was not made; the work goes back to the stream for the new owner.',
  },
  ksc_lease_lost: {
    level: 'warning',
    stage: 'ksc',
    description:
      'Processors sharing KSC work: this processor stopped owning a KSC connection because a renewal of its lease failed (NATS unreachable, or another processor took the key after it expired); it stops acting on that connection at once. Logged with the reason; `cefd_ksc_owner_changes_total{change="lost"}`.',
  },
  ksc_work_publish_failed: {
    level: 'error',
    stage: 'ksc',
    description:
      'Processors sharing KSC work: a rule trigger or task state could not be published to the KSC work stream; the NATS messages of the events it came from are not acknowledged (negative acknowledgement), so they are delivered again and nothing is lost.',
  },
  ksc_store_failed: {
    level: 'error',
    stage: 'ksc',
    description:
      'The KSC state store (`<state_dir>/ksc.sqlite`) could not be opened (permissions, or a store written by a newer cefd).',
  },
  sql_row_unusable: {
    level: 'error',
    stage: 'sql',
    description:
      'A row read by a `sql` source has no value in its cursor column: it cannot be placed in the cursor order, so it goes to the dead-letter output with its columns (`sql.row`) instead of becoming an event.',
  },
  sql_cursor_kind_mismatch: {
    level: 'error',
    stage: 'sql',
    description:
      'A `sql` source\'s `latest_query` returned a value of another kind than the cursor (a number against a time cursor, or the reverse): it does not return the newest value of the cursor column. The check for a database that went back is skipped (nothing is reset or replayed) until `latest_query` is fixed.',
  },
  sql_newest_below_cursor: {
    level: 'warning',
    stage: 'sql',
    description:
      'A `sql` source\'s `latest_query` returned a value below the stored cursor: the newest rows were deleted, or the database was restored. The cursor is kept (nothing is reset or replayed); only rows written afterwards at or below the cursor make it a database that went back (`on_cursor_backwards`, docs/sql-source.md).',
  },
  sql_gap_given_up: {
    level: 'warning',
    stage: 'sql',
    description:
      'A `sql` source with `gap_wait` moved its cursor past ids that still had no row after `gap_wait` (the log line gives them, `cefd_sql_gap_ids_skipped_total` counts them): a row committed there later is not read.',
  },
  admin_unauthorized: {
    level: 'error',
    stage: 'ksc',
    description:
      'Admin API: the request had no `Authorization: Bearer` header or a wrong token (status 401).',
  },
  admin_rate_limited: {
    level: 'error',
    stage: 'ksc',
    description:
      'Admin API and the console\'s event stream: too many wrong bearer tokens from the client address (the limit of console sign-ins, shared with them: 5 free, then waits of 1 s doubling up to 15 min); the token is not looked at until the wait is over (status 429 with `Retry-After`; docs/console.md).',
  },
  admin_not_found: {
    level: 'error',
    stage: 'ksc',
    description:
      'Admin API: no such endpoint (status 404).',
  },
  admin_method_not_allowed: {
    level: 'error',
    stage: 'ksc',
    description:
      'Admin API: the endpoint exists but not with this HTTP method (status 405, with an `Allow` header).',
  },
  admin_bad_request: {
    level: 'error',
    stage: 'ksc',
    description:
      'Admin API: a malformed HTTP request or path (status 400).',
  },
  admin_bad_json: {
    level: 'error',
    stage: 'ksc',
    description:
      'Admin API: the request body is not valid JSON (status 400).',
  },
  admin_unsupported_media_type: {
    level: 'error',
    stage: 'ksc',
    description:
      'Admin API: a request body that is not `Content-Type: application/json` (status 415).',
  },
  admin_body_too_large: {
    level: 'error',
    stage: 'ksc',
    description:
      'Admin API: the request body is larger than `ksc.admin.max_body_bytes` (status 413; the connection is closed).',
  },
  admin_timeout: {
    level: 'error',
    stage: 'ksc',
    description:
      'Admin API: the request did not arrive within `ksc.admin.request_timeout` (status 408; the connection is closed).',
  },
  admin_internal: {
    level: 'error',
    stage: 'ksc',
    description:
      'Admin API: an unexpected error (status 500); the daemon log has the details.',
  },
  console_csrf: {
    level: 'error',
    stage: 'ksc',
    description:
      'Console: a change (POST, PATCH, PUT, DELETE) with the session cookie but without the session\'s CSRF token in `X-CSRF-Token` (status 403; docs/console.md).',
  },
  console_bad_filter: {
    level: 'error',
    stage: 'ksc',
    description:
      'Console and `cefd tap`: the live tail\'s or the search\'s filter is not valid filter language (status 400; docs/filters.md).',
  },
  console_tail_busy: {
    level: 'error',
    stage: 'ksc',
    description:
      'Console and `cefd tap`: as many live tails are open as the console serves at once (32; status 503; docs/console.md). Each tail costs the daemon work per event: close one, or use an output.',
  },
  console_not_found: {
    level: 'error',
    stage: 'ksc',
    description:
      'Console: the event is no longer among the last `ksc.admin.console.tail_events` events in memory (status 404).',
  },
  console_ksc_off: {
    level: 'error',
    stage: 'ksc',
    description:
      'Console: a KSC page needs the KSC integration, which is off (`ksc.enabled: false`; status 409).',
  },
} as const satisfies Record<string, CodeInfo>;

export type Code = keyof typeof CODES;

/** A warning or error attached to an event (POLICY row 18): `{code, key?, message?}`. */
export interface Problem {
  code: Code;
  key?: string;
  message?: string;
}

export function isCode(s: string): s is Code {
  return Object.prototype.hasOwnProperty.call(CODES, s);
}

/** Process exit codes (sysexits): 64 a usage error, 78 a configuration an operator must fix. */
export const EXIT = { ok: 0, failure: 1, usage: 64, config: 78 } as const;
