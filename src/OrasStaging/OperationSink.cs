namespace OrasStaging;

/// <summary>A snapshot of one long-running piece of work. Latest wins: sinks keep only the newest.</summary>
/// <param name="Activity">What is being done, e.g. "Downloading sha256:1a2b3c4d…".</param>
/// <param name="Phase">A short word for the stage (Resolve, Download, Decode, Write, Verify).</param>
/// <param name="Completed">Units done so far (bytes for transfers).</param>
/// <param name="Total">Total units when known.</param>
public readonly record struct ProgressInfo(string Activity, string Phase, long Completed, long? Total);

/// <summary>
/// How the core reports back without knowing about PowerShell. Implementations must be thread-safe:
/// the core calls them from thread-pool threads, and the cmdlet layer drains them on the pipeline thread.
/// </summary>
public interface IOperationSink
{
    void Progress(ProgressInfo info);

    /// <summary>A milestone worth a line in a CI log. Never pass a token, password or signed query string.</summary>
    void Verbose(string message);

    void Warning(string message);
}

/// <summary>A sink that drops everything; for tests and callers that do not care.</summary>
public sealed class NullOperationSink : IOperationSink
{
    public static readonly NullOperationSink Instance = new();

    public void Progress(ProgressInfo info) { }

    public void Verbose(string message) { }

    public void Warning(string message) { }
}
