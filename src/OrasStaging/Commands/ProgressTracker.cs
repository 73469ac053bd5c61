using System.Diagnostics;
using System.Management.Automation;

namespace OrasStaging.Commands;

/// <summary>
/// The progress maths: turns the core's snapshots into ProgressRecords with a rate and time left, at most two a
/// second per phase so a fast copy does not flood the host. The rate restarts with each phase, since a phase's
/// bytes (download, decode, write) are not comparable with the last one's.
/// </summary>
internal sealed class ProgressTracker
{
    private static readonly TimeSpan Throttle = TimeSpan.FromMilliseconds(500);

    private readonly int _activityId;
    private readonly int _parentId;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private string? _phase;
    private long _phaseStartBytes;
    private TimeSpan _phaseStart;
    private TimeSpan _lastWrite = TimeSpan.FromDays(-1);
    private ProgressRecord? _last;

    public ProgressTracker(int activityId, int parentId)
    {
        _activityId = activityId;
        _parentId = parentId;
    }

    /// <summary>True once a record was produced, so the bar must be closed at the end.</summary>
    public bool Shown => _last is not null;

    /// <summary>The record to write for <paramref name="info"/>, or null when it falls inside the throttle.</summary>
    public ProgressRecord? Update(ProgressInfo info)
    {
        var now = _clock.Elapsed;
        if (info.Phase != _phase)
        {
            _phase = info.Phase;
            _phaseStart = now;
            _phaseStartBytes = info.Completed;
        }
        else if (now - _lastWrite < Throttle)
        {
            return null;
        }

        _lastWrite = now;
        double seconds = (now - _phaseStart).TotalSeconds;
        // Under 0.2 s the rate is noise; show none rather than a wild first figure.
        double rate = seconds > 0.2 ? (info.Completed - _phaseStartBytes) / seconds : 0;
        string status = info.Total is { } total
            ? $"{info.Phase}: {Units.Bytes(info.Completed)} of {Units.Bytes(total)}"
            : $"{info.Phase}: {Units.Bytes(info.Completed)}";
        if (rate > 0)
        {
            status += $" ({Units.Bytes((long)rate)}/s)";
        }

        var record = new ProgressRecord(_activityId, info.Activity, status) { ParentActivityId = _parentId };
        if (info.Total is { } t && t > 0)
        {
            record.PercentComplete = (int)Math.Clamp(info.Completed * 100 / t, 0, 100);
            if (rate > 0)
            {
                record.SecondsRemaining = (int)Math.Clamp((t - info.Completed) / rate, 0, int.MaxValue);
            }
        }

        _last = record;
        return record;
    }

    /// <summary>The record that closes the bar.</summary>
    public ProgressRecord Completed() =>
        new(_activityId, _last?.Activity ?? "Done", "Done")
        {
            ParentActivityId = _parentId,
            RecordType = ProgressRecordType.Completed,
        };
}
