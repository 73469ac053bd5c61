using System.Management.Automation.Host;

namespace OrasStaging.Commands;

/// <summary>
/// Azure Pipelines logging commands (<c>##vso[...]</c>), the one place that writes them: a build log shows no
/// progress bars and hides errors in the text, so when running there (TF_BUILD is set) long work also reports
/// <c>task.setprogress</c>, and each failure a <c>task.logissue</c> that the run's summary lists.
/// </summary>
internal sealed class AzurePipelines
{
    /// <summary>Read once per process: the agent sets it for the whole job.</summary>
    internal static readonly bool Enabled = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("TF_BUILD"));

    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(5);

    private readonly PSHostUserInterface _ui;
    private DateTime _lastProgress = DateTime.MinValue;

    public AzurePipelines(PSHostUserInterface ui) => _ui = ui;

    /// <summary>A progress line, at most one per five seconds: the log keeps every line, unlike a bar.</summary>
    public void Progress(int percentComplete, string phase)
    {
        if (!Enabled || percentComplete < 0 || DateTime.UtcNow - _lastProgress <= ProgressInterval)
        {
            return;
        }

        _lastProgress = DateTime.UtcNow;
        _ui.WriteLine($"##vso[task.setprogress value={percentComplete};]{phase}");
    }

    /// <summary>An error issue for the run's summary.</summary>
    public void Error(string message)
    {
        if (Enabled)
        {
            _ui.WriteLine($"##vso[task.logissue type=error]{Escape(message)}");
        }
    }

    /// <summary>
    /// A logging command is one line: Azure Pipelines' escapes keep a multi-line message (qemu-img's output, say)
    /// inside the one issue instead of spilling into the log as plain lines.
    /// </summary>
    internal static string Escape(string message) =>
        message.Replace("%", "%AZP25").Replace("\r", "%0D").Replace("\n", "%0A");
}
