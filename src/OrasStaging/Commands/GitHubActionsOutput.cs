using System.Management.Automation.Host;
using OrasStaging.Inventory;
using OrasStaging.Staging;

namespace OrasStaging.Commands;

/// <summary>
/// GitHub Actions output, the one place that writes it (the lines and their escaping are
/// <see cref="GitHubActions"/>'): when running as a workflow step (<c>GITHUB_ACTIONS=true</c>) each failure is also an
/// <c>::error::</c> line the run's annotations list, each image's staging is one collapsible <c>::group::</c>, and
/// the images staged by a command are a table appended to <c>$GITHUB_STEP_SUMMARY</c>. Everything in those lines
/// that came from a registry, a config or a path is escaped, so it cannot start a workflow command of its own.
/// </summary>
internal sealed class GitHubActionsOutput
{
    /// <summary>Read once per process: the runner sets it for the whole job.</summary>
    internal static readonly bool Enabled = GitHubActions.IsActive();

    private readonly PSHostUserInterface _ui;

    public GitHubActionsOutput(PSHostUserInterface ui) => _ui = ui;

    /// <summary>An error annotation, titled with the stable error id.</summary>
    public void Error(string message, string? errorId)
    {
        if (Enabled)
        {
            _ui.WriteLine(GitHubActions.Error(message, title: errorId));
        }
    }

    /// <summary>Opens a group; disposing the result closes it. Groups do not nest on GitHub, so callers use one level.</summary>
    public IDisposable Group(string title)
    {
        if (!Enabled)
        {
            return NoGroup.Instance;
        }

        _ui.WriteLine(GitHubActions.Group(title));
        return new OpenGroup(_ui);
    }

    /// <summary>Appends the table of <paramref name="images"/> to the job summary; a summary that cannot be written is a warning, never a failure.</summary>
    public void Summary(IReadOnlyCollection<StagedImage> images, Action<string> warn)
    {
        if (!Enabled || images.Count == 0)
        {
            return;
        }

        if (!GitHubActions.TryAppendSummary(GitHubActions.StagedImagesSummary(images), out string? error))
        {
            warn(error!);
        }
    }

    private sealed class OpenGroup(PSHostUserInterface ui) : IDisposable
    {
        private bool _closed;

        public void Dispose()
        {
            if (!_closed)
            {
                _closed = true;
                ui.WriteLine(GitHubActions.EndGroup);
            }
        }
    }

    private sealed class NoGroup : IDisposable
    {
        public static readonly NoGroup Instance = new();

        public void Dispose()
        {
        }
    }
}
