using System.Management.Automation;

namespace OrasStaging.Commands;

/// <summary>
/// The input parameters of the cmdlets that read image files (Expand-DiskImage, Convert-DiskImage): wildcard
/// -Path, and -LiteralPath that binds a file object's PSPath from the pipeline, declared once so both cmdlets
/// bind the same way.
/// </summary>
public abstract class FileInputCmdletBase : OrasCmdletBase
{
    protected const string PathSet = "Path";
    protected const string LiteralPathSet = "LiteralPath";

    /// <summary>Files to read; wildcards are expanded.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>Files to read, taken as written (names with [ ] stay literal).</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("PSPath", "LP")]
    [ValidateNotNullOrEmpty]
    public string[] LiteralPath { get; set; } = Array.Empty<string>();

    /// <summary>The files this call names, resolved against PowerShell's location; misses are reported and skipped.</summary>
    protected IEnumerable<string> InputFiles()
    {
        bool literal = ParameterSetName == LiteralPathSet;
        return ResolveInputPaths(literal ? LiteralPath : Path, literal);
    }
}
