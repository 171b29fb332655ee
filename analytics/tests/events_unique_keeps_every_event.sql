{{ config(tags=['amplitude'], meta={'dagster': {'ref': {'name': 'events_unique'}}}) }}
-- Deduplication drops re-exports, never an event: every (project, uuid) loaded is in
-- events_unique.
select project, uuid from {{ source('amplitude', 'events') }} where uuid is not null
except
select project, uuid from {{ ref('events_unique') }}
