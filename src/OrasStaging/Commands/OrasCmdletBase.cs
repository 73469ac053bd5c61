using System.Collections.Concurrent;
using System.Collections.ObjectModel;
using System.Diagnostics;
using System.Management.Automation;

namespace OrasStaging.Commands;

/// <summary>
/// What every OrasStaging cmdlet shares: the cancel source behind Ctrl+C, the pump that runs core work on the
/// thread pool while the pipeline thread does every Write* call (PowerShell throws when they are called from
/// another thread), path resolution against PowerShell's location, and the mapping of core failures to stable
/// error ids.
/// </summary>
public abstract class OrasCmdletBase : PSCmdlet, IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private static readonly bool InAzurePipelines =
        !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("TF_BUILD"));
    private DateTime _lastVsoProgress = DateTime.MinValue;

    /// <summary>Cancelled by Ctrl+C (StopProcessing).</summary>
    protected CancellationToken CancellationToken => _stop.Token;

    protected override void StopProcessing() => _stop.Cancel();

    public void Dispose()
    {
        _stop.Dispose();
        GC.SuppressFinalize(this);
    }

    #region Running core work

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
            if (InAzurePipelines && record.PercentComplete >= 0
                && DateTime.UtcNow - _lastVsoProgress > TimeSpan.FromSeconds(5))
            {
                _lastVsoProgress = DateTime.UtcNow;
                Host.UI.WriteLine($"##vso[task.setprogress value={record.PercentComplete};]{info.Phase}");
            }
        }
    }

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

    /// <summary>Turns snapshots into throttled ProgressRecords with a rate and time left.</summary>
    private sealed class ProgressTracker
    {
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

        public bool Shown => _last is not null;

        public ProgressRecord? Update(ProgressInfo info)
        {
            var now = _clock.Elapsed;
            if (info.Phase != _phase)
            {
                _phase = info.Phase;
                _phaseStart = now;
                _phaseStartBytes = info.Completed;
            }
            else if (now - _lastWrite < TimeSpan.FromMilliseconds(500))
            {
                return null;
            }

            _lastWrite = now;
            double seconds = (now - _phaseStart).TotalSeconds;
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

        public ProgressRecord Completed()
        {
            var record = new ProgressRecord(_activityId, _last?.Activity ?? "Done", "Done")
            {
                ParentActivityId = _parentId,
                RecordType = ProgressRecordType.Completed,
            };
            return record;
        }
    }

    #endregion

    #region Paths

    /// <summary>
    /// Resolves a path that may not exist yet against PowerShell's current location (not the process's),
    /// honouring <c>~</c> and PSDrives.
    /// </summary>
    protected string ResolveOutputPath(string path)
    {
        string resolved = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out ProviderInfo provider, out _);
        RequireFileSystem(provider, path);
        return resolved;
    }

    /// <summary>
    /// Only the FileSystem provider yields paths that .NET can open; any other provider's path (Variable:, Env:,
    /// Registry) would otherwise be taken as a relative file name under the process's current directory.
    /// </summary>
    private static void RequireFileSystem(ProviderInfo provider, string path)
    {
        if (!string.Equals(provider.Name, "FileSystem", StringComparison.OrdinalIgnoreCase))
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"'{path}' is a {provider.Name} path, not a file system path.",
                "Give a path on a file system drive.");
        }
    }

    /// <summary>
    /// Resolves input paths: wildcards for <c>-Path</c>, taken literally for <c>-LiteralPath</c>. A path that
    /// matches nothing is reported as a non-terminating PathNotFound error and skipped.
    /// </summary>
    protected IEnumerable<string> ResolveInputPaths(IEnumerable<string> paths, bool literal)
    {
        foreach (string path in paths)
        {
            if (literal)
            {
                string resolved;
                try
                {
                    resolved = ResolveOutputPath(path);
                }
                catch (OrasStagingException ex)
                {
                    resolved = string.Empty;
                    WriteError(CreateErrorRecord(ex, path));
                }

                if (resolved.Length == 0)
                {
                    continue;
                }

                if (Directory.Exists(resolved))
                {
                    WriteError(CreateErrorRecord(
                        new OrasStagingException(ErrorCode.InvalidArgument, $"'{resolved}' is a folder, not a file.",
                            "Give the path of a file."),
                        path));
                    continue;
                }

                if (!File.Exists(resolved))
                {
                    WriteError(CreateErrorRecord(
                        new OrasStagingException(ErrorCode.PathNotFound, $"Cannot find the file '{resolved}'.",
                            "Check the path; with -LiteralPath no wildcard is expanded."),
                        path));
                    continue;
                }

                yield return resolved;
                continue;
            }

            Collection<string>? found = null;
            ErrorRecord? error = null;
            try
            {
                found = GetResolvedProviderPathFromPSPath(path, out ProviderInfo provider);
                RequireFileSystem(provider, path);
            }
            catch (OrasStagingException ex)
            {
                error = CreateErrorRecord(ex, path);
            }
            catch (ItemNotFoundException ex)
            {
                error = CreateErrorRecord(
                    new OrasStagingException(ErrorCode.PathNotFound, ex.Message,
                        "Check the path. Use -LiteralPath for names that contain [ or ]."),
                    path);
            }

            if (error is not null)
            {
                WriteError(error);
                continue;
            }

            if (found is null || found.Count == 0)
            {
                WriteError(CreateErrorRecord(
                    new OrasStagingException(ErrorCode.PathNotFound, $"No file matches '{path}'.",
                        "Check the path and the wildcard pattern."),
                    path));
                continue;
            }

            // A wildcard that also matches folders means the files among them; a folder named outright is a mistake.
            var files = found.Where(item => !Directory.Exists(item)).ToList();
            if (files.Count == 0)
            {
                WriteError(CreateErrorRecord(
                    new OrasStagingException(ErrorCode.InvalidArgument, $"'{path}' matches only folders, not files.",
                        "Give the path of a file, or a wildcard that matches files."),
                    path));
                continue;
            }

            foreach (string item in files)
            {
                yield return item;
            }
        }
    }

    /// <summary>
    /// A written file as Get-Item shows it: through the provider, so it carries PSPath, pipes into -LiteralPath
    /// (names with [ ] stay literal) and gets the usual file table view.
    /// </summary>
    protected object FileOutput(string path)
    {
        var items = InvokeProvider.Item.Get(new[] { path }, true, true);
        return items.Count == 1 ? items[0] : new FileInfo(path);
    }

    #endregion

    #region Errors

    /// <summary>Maps any failure to an ErrorRecord with a stable id, a category and a recommended action.</summary>
    protected internal static ErrorRecord CreateErrorRecord(Exception exception, object? target)
    {
        var (id, category, action) = Classify(exception);
        var record = new ErrorRecord(exception, id, category, target);
        if (action is not null)
        {
            record.ErrorDetails = new ErrorDetails(exception.Message) { RecommendedAction = action };
        }

        return record;
    }

    internal static (string Id, ErrorCategory Category, string? Action) Classify(Exception exception) =>
        exception switch
        {
            OrasStagingException e => (e.Code.ToString(), CategoryOf(e.Code), e.RecommendedAction),
            DirectoryNotFoundException or FileNotFoundException or System.Management.Automation.DriveNotFoundException
                or System.IO.DriveNotFoundException or ItemNotFoundException => (nameof(ErrorCode.PathNotFound), ErrorCategory.ObjectNotFound,
                "Check the path: every folder in it must exist (or be creatable) and be a folder, not a file."),
            UnauthorizedAccessException => (nameof(ErrorCode.DestinationNotWritable), ErrorCategory.PermissionDenied,
                "Choose a folder you can write to, or fix its permissions."),
            IOException io when IsDiskFull(io) => (nameof(ErrorCode.InsufficientSpace), ErrorCategory.ResourceUnavailable,
                "Free some space on the destination volume or choose another destination."),
            TimeoutException => (nameof(ErrorCode.OperationTimeout), ErrorCategory.OperationTimeout, null),
            HttpRequestException => (nameof(ErrorCode.RegistryUnavailable), ErrorCategory.ConnectionError,
                "Check the registry address, your network and any proxy settings."),
            _ => ("UnexpectedError", ErrorCategory.NotSpecified, null),
        };

    internal static ErrorCategory CategoryOf(ErrorCode code) => code switch
    {
        ErrorCode.ReferenceInvalid => ErrorCategory.InvalidArgument,
        ErrorCode.ManifestNotFound => ErrorCategory.ObjectNotFound,
        ErrorCode.BlobNotFound => ErrorCategory.ObjectNotFound,
        ErrorCode.AuthenticationFailed => ErrorCategory.AuthenticationError,
        ErrorCode.AccessDenied => ErrorCategory.PermissionDenied,
        ErrorCode.PlatformAmbiguous => ErrorCategory.InvalidArgument,
        ErrorCode.NoImageLayer => ErrorCategory.InvalidData,
        ErrorCode.DigestMismatch => ErrorCategory.InvalidResult,
        ErrorCode.RegistryUnavailable => ErrorCategory.ConnectionError,
        ErrorCode.RegistryProtocolError => ErrorCategory.ProtocolError,
        ErrorCode.DestinationExists => ErrorCategory.ResourceExists,
        ErrorCode.InvalidTitle => ErrorCategory.InvalidData,
        ErrorCode.UnsupportedFormat => ErrorCategory.InvalidData,
        ErrorCode.CorruptInput => ErrorCategory.InvalidData,
        ErrorCode.QemuImgNotFound => ErrorCategory.ObjectNotFound,
        ErrorCode.QemuImgFailed => ErrorCategory.InvalidResult,
        ErrorCode.InsufficientSpace => ErrorCategory.ResourceUnavailable,
        ErrorCode.PathNotFound => ErrorCategory.ObjectNotFound,
        ErrorCode.DestinationNotWritable => ErrorCategory.PermissionDenied,
        ErrorCode.LockTimeout => ErrorCategory.ResourceBusy,
        ErrorCode.ConfigInvalid => ErrorCategory.InvalidData,
        ErrorCode.InvalidArgument => ErrorCategory.InvalidArgument,
        ErrorCode.OperationTimeout => ErrorCategory.OperationTimeout,
        _ => ErrorCategory.NotSpecified,
    };

    /// <summary>ENOSPC on Unix (28), ERROR_DISK_FULL / ERROR_HANDLE_DISK_FULL on Windows.</summary>
    internal static bool IsDiskFull(IOException io)
    {
        int code = io.HResult & 0xFFFF;
        return code == 28 || code == 0x70 || code == 0x27;
    }

    /// <summary>
    /// True for a failure of one pipeline input, which is reported and lets the next input run; false for the
    /// pipeline being stopped (Ctrl+C), which must end the command.
    /// </summary>
    protected bool IsItemFailure(Exception exception) =>
        exception is not PipelineStoppedException
        && !(exception is OperationCanceledException && (Stopping || _stop.IsCancellationRequested));

    /// <summary>Writes a non-terminating error, and the Azure Pipelines issue line when running there.</summary>
    protected void WriteMappedError(Exception exception, object? target)
    {
        var record = CreateErrorRecord(exception, target);
        if (InAzurePipelines)
        {
            Host.UI.WriteLine($"##vso[task.logissue type=error]{EscapeVso(exception.Message)}");
        }

        WriteError(record);
    }

    /// <summary>Stops the pipeline with a mapped error, and the Azure Pipelines issue line when running there.</summary>
    protected void ThrowMappedError(Exception exception, object? target)
    {
        var record = CreateErrorRecord(exception, target);
        if (InAzurePipelines)
        {
            Host.UI.WriteLine($"##vso[task.logissue type=error]{EscapeVso(exception.Message)}");
        }

        ThrowTerminatingError(record);
    }

    /// <summary>
    /// A logging command is one line: Azure Pipelines' escapes keep a multi-line message (qemu-img's output, say)
    /// inside the one issue instead of spilling into the log as plain lines.
    /// </summary>
    internal static string EscapeVso(string message) =>
        message.Replace("%", "%AZP25").Replace("\r", "%0D").Replace("\n", "%0A");

    #endregion
}
