{{ config(tags=['amplitude']) }}
-- Every amplitude_id of each project (in its events or its merges) and the user it counts
-- for: canonical_amplitude_id, the original id it was merged into (identity_merges, chains
-- followed), itself when never merged; merged says which. Join it to amplitude_all.events or a
-- cohort's members on (project, amplitude_id) to count their users as Amplitude does.
with ids as (
    select project, amplitude_id from {{ source('amplitude', 'events') }}
    where amplitude_id is not null
    union
    select project, amplitude_id from {{ source('amplitude', 'identity_merges') }}
    union
    select project, canonical_amplitude_id from {{ source('amplitude', 'identity_merges') }}
)
select ids.project, ids.amplitude_id,
       coalesce(merges.canonical_amplitude_id, ids.amplitude_id) as canonical_amplitude_id,
       merges.amplitude_id is not null as merged
from ids
left join {{ source('amplitude', 'identity_merges') }} as merges
    on merges.project = ids.project and merges.amplitude_id = ids.amplitude_id
