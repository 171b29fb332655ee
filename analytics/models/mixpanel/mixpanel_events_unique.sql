-- One row per Mixpanel event as Mixpanel deduplicates at query time: rows with equal event,
-- distinct_id, $insert_id and time are one event, and the copy Mixpanel processed last wins
-- (the highest mp_processing_time; then the latest _day, file and row, so the choice is stable).
-- "time" is compared as served (time_raw): in the hour that happens twice when clocks go back,
-- two copies processed at different times can resolve to different UTC instants, yet are one
-- event. A row without $insert_id cannot be matched (Mixpanel cannot deduplicate it either) and
-- is kept as it is. mixpanel.events keeps every row as served.
--
-- Only keys that occur more than once are ranked, and the losers anti-joined by rowid, as in
-- events_unique: ranking every wide row with a window costs far more than the few duplicates.
with keyed as (
    select rowid as row_id, event, distinct_id, insert_id, time_raw,
           mp_processing_time, _day, _source_file
    from {{ source('mixpanel', 'events') }}
    where insert_id is not null
),

repeated as (
    select event, distinct_id, insert_id, time_raw
    from keyed
    group by all
    having count(*) > 1
),

losing as (
    select keyed.row_id as losing_row
    from keyed
    semi join repeated
        on keyed.event = repeated.event
        and keyed.distinct_id is not distinct from repeated.distinct_id
        and keyed.insert_id = repeated.insert_id
        and keyed.time_raw = repeated.time_raw
    qualify row_number() over (
        partition by keyed.event, keyed.distinct_id, keyed.insert_id, keyed.time_raw
        order by keyed.mp_processing_time desc nulls last,
                 keyed._day desc,
                 keyed._source_file desc,
                 keyed.row_id desc
    ) > 1
)

select events.*
from {{ source('mixpanel', 'events') }} as events
anti join losing on events.rowid = losing.losing_row
