-- One row per Mixpanel event of each project (mixpanel_all.events) as Mixpanel deduplicates at
-- query time: rows of one project with equal event, distinct_id, $insert_id and time are one
-- event, and the copy Mixpanel processed last wins (the highest mp_processing_time; then the
-- latest _day and file, then the instant, so the choice does not depend on the rows' order).
-- "time" is compared as served (time_raw): in the hour that happens twice when clocks go back,
-- two copies processed at different times can resolve to different UTC instants, yet are one
-- event. A row without $insert_id cannot be matched (Mixpanel cannot deduplicate it either) and
-- is kept as it is. mixpanel_all.events keeps every row as served.
--
-- Only keys that occur more than once are ranked, as in events_unique: ranking every wide row
-- with a window costs far more than the few duplicates. The all-projects view has no rowid to
-- anti-join the losers by, hence the two branches; `repeated` is written into both rather than
-- a CTE, which DuckDB would materialize, and then read every wide column for any query.
{% set repeated %}
    select project, event, distinct_id, insert_id, time_raw
    from {{ source('mixpanel', 'events') }}
    where insert_id is not null
    group by all
    having count(*) > 1
{% endset %}

select events.*
from {{ source('mixpanel', 'events') }} as events
anti join ({{ repeated }}) as repeated
    on events.project = repeated.project
    and events.event = repeated.event
    and events.distinct_id is not distinct from repeated.distinct_id
    and events.insert_id = repeated.insert_id
    and events.time_raw = repeated.time_raw

union all

select events.*
from {{ source('mixpanel', 'events') }} as events
semi join ({{ repeated }}) as repeated
    on events.project = repeated.project
    and events.event = repeated.event
    and events.distinct_id is not distinct from repeated.distinct_id
    and events.insert_id = repeated.insert_id
    and events.time_raw = repeated.time_raw
qualify row_number() over (
    partition by events.project, events.event, events.distinct_id, events.insert_id,
                 events.time_raw
    order by events.mp_processing_time desc nulls last,
             events._day desc,
             events._source_file desc,
             events.time desc nulls last
) = 1
