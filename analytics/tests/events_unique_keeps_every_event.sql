{{ config(meta={'dagster': {'ref': {'name': 'events_unique'}}}) }}
-- Deduplication drops re-exports, never an event: every uuid loaded is in events_unique.
select uuid from {{ source('amplitude', 'events') }} where uuid is not null
except
select uuid from {{ ref('events_unique') }}
