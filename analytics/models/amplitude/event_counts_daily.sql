-- Per project, event date (the project's time zone) and event type: the number of events
-- (totals) and of distinct users with such an event (uniques, canonical_amplitude_id: a merged
-- user counts once), as /api/2/events/segmentation counts them with m=totals and m=uniques. A
-- project's day total over every type is sum(totals).
select
    project,
    event_date,
    event_type,
    count(*) as totals,
    count(distinct canonical_amplitude_id) as uniques
from {{ ref('events_unique') }}
group by project, event_date, event_type
