using System.Collections.Concurrent;
using System.Management.Automation;

namespace OrasStaging.Commands;

/// <summary>
/// The pipeline pump: core work runs on the thread pool while the pipeline thread does every Write* call
/// (PowerShell throws when they are called from another thread), and Ctrl+C becomes cancellation of that work.
/// </summary>
public abstract class AsyncPSCmdlet : PSCmdlet, IDisposable
{
    private readonly CancellationTokenSource _stop = new();

    /// <summary>Cancelled by Ctrl+C (StopProcessing).</summary>
    protected CancellationToken CancellationToken => _stop.Token;

    protected override void StopProcessing() => _stop.Cancel();

    public void Dispose()
    {
        _stop.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>
    /// Runs <paramref name="work"/> on the thread pool and pumps its progress, Verbose and Warning messages on
    /// the pipeline thread until it ends. Exceptions surface unwrapped; Ctrl+C becomes PipelineStoppedException.
    /// </summary>
    protected T RunBlocking<T>(
        Func<IOperationSink, CancellationToken, Task<T>> work,
        int activityId = 1,
        int parentActivityId = -1)
    {
        var sink = new PumpedSink();
        var progress = new ProgressTracker(activityId, parentActivityId);
        Task<T> task = Task.Run(() => work(sink, _stop.Token));
        // Waiting on the handle rather than Task.Wait keeps faults unwrapped (no AggregateException).
        WaitHandle done = ((IAsyncResult)task).AsyncWaitHandle;
        try
        {
            while (!done.WaitOne(200))
            {
                Drain(sink, progress);
            }

            Drain(sink, progress);
            return task.GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            throw new PipelineStoppedException();
        }
        finally
        {
            if (!task.IsCompleted)
            {
                // Once the pipeline is stopping, Write* throws here before the work has ended. The work must still
                // run its cleanup (removing partial files) before the command returns, or a partial file could
                // outlive it; so cancel it and wait, bounded, for it to unwind.
                _stop.Cancel();
                try
                {
                    task.Wait(TimeSpan.FromSeconds(60));
                }
                catch (AggregateException)
                {
                    // Its failure is not news: the command is already ending with another exception.
                }
            }

            if (progress.Shown && !Stopping)
            {
                WriteProgress(progress.Completed());
            }
        }
    }

    /// <summary>Runs work that returns nothing; see <see cref="RunBlocking{T}"/>.</summary>
    protected void RunBlocking(
        Func<IOperationSink, CancellationToken, Task> work,
        int activityId = 1,
        int parentActivityId = -1)
    {
        RunBlocking<bool>(async (sink, ct) =>
        {
            await work(sink, ct).ConfigureAwait(false);
            return true;
        }, activityId, parentActivityId);
    }

    /// <summary>
    /// True for a failure of one pipeline input, which is reported and lets the next input run; false for the
    /// pipeline being stopped (Ctrl+C), which must end the command.
    /// </summary>
    protected bool IsItemFailure(Exception exception) =>
        exception is not PipelineStoppedException
        && !(exception is OperationCanceledException && (Stopping || _stop.IsCancellationRequested));

    /// <summary>Called on the pipeline thread after each progress record is written; for logs beside the host's bar.</summary>
    private protected virtual void OnProgressWritten(ProgressRecord record, ProgressInfo info)
    {
    }

    private void Drain(PumpedSink sink, ProgressTracker tracker)
    {
        while (sink.Messages.TryDequeue(out var message))
        {
            if (message.IsWarning)
            {
                WriteWarning(message.Text);
            }
            else
            {
                WriteVerbose(message.Text);
            }
        }

        if (sink.TakeLatest() is { } info && tracker.Update(info) is { } record)
        {
            WriteProgress(record);
            OnProgressWritten(record, info);
        }
    }

    /// <summary>
    /// The sink the work writes to from any thread: messages queue in order; progress keeps only the latest
    /// snapshot, since an older one is stale by the time the pipeline thread gets to it.
    /// </summary>
    private sealed class PumpedSink : IOperationSink
    {
        private ProgressInfo? _latest;
        private readonly object _gate = new();

        public ConcurrentQueue<(bool IsWarning, string Text)> Messages { get; } = new();

        public void Progress(ProgressInfo info)
        {
            lock (_gate)
            {
                _latest = info;
            }
        }

        public void Verbose(string message) => Messages.Enqueue((false, message));

        public void Warning(string message) => Messages.Enqueue((true, message));

        public ProgressInfo? TakeLatest()
        {
            lock (_gate)
            {
                var latest = _latest;
                _latest = null;
                return latest;
            }
        }
    }
}
