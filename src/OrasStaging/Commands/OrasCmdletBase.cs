using System.Management.Automation;

namespace OrasStaging.Commands;

/// <summary>
/// What every OrasStaging cmdlet adds to the pump: paths resolved against PowerShell's location, and failures
/// written with their stable id (<see cref="ErrorMapping"/>) and, in Azure Pipelines, as a logged issue too.
/// </summary>
public abstract class OrasCmdletBase : AsyncPSCmdlet
{
    private PathResolver? _paths;
    private AzurePipelines? _pipelines;

    private protected PathResolver Paths => _paths ??= new PathResolver(this);

    private AzurePipelines Pipelines => _pipelines ??= new AzurePipelines(Host.UI);

    private GitHubActionsOutput? _gitHub;

    /// <summary>GitHub Actions groups, annotations and the job summary (inactive outside a workflow step).</summary>
    private protected GitHubActionsOutput GitHub => _gitHub ??= new GitHubActionsOutput(Host.UI);

    /// <summary>A path that may not exist yet, resolved against PowerShell's location; see <see cref="PathResolver"/>.</summary>
    protected string ResolveOutputPath(string path) => Paths.Unresolved(path);

    /// <summary>A written file as Get-Item shows it; see <see cref="PathResolver.FileOutput"/>.</summary>
    protected object FileOutput(string path) => Paths.FileOutput(path);

    /// <summary>Writes a non-terminating error, and the Azure Pipelines issue line when running there.</summary>
    protected void WriteMappedError(Exception exception, object? target)
    {
        var record = ErrorMapping.ToErrorRecord(exception, target);
        Pipelines.Error(exception.Message);
        GitHub.Error(exception.Message, record.FullyQualifiedErrorId);
        WriteError(record);
    }

    /// <summary>Stops the pipeline with a mapped error, and the Azure Pipelines issue line when running there.</summary>
    protected void ThrowMappedError(Exception exception, object? target)
    {
        var record = ErrorMapping.ToErrorRecord(exception, target);
        Pipelines.Error(exception.Message);
        GitHub.Error(exception.Message, record.FullyQualifiedErrorId);
        ThrowTerminatingError(record);
    }

    private protected override void OnProgressWritten(ProgressRecord record, ProgressInfo info) =>
        Pipelines.Progress(record.PercentComplete, info.Phase);
}
