using System.Collections.ObjectModel;
using System.Management.Automation;
using OrasStaging.IO;

namespace OrasStaging.Commands;

/// <summary>
/// Path resolution for the cmdlets, all through the cmdlet's SessionState: a path is relative to PowerShell's
/// location (not the process's), honours <c>~</c> and PSDrives, and must be on the FileSystem provider.
/// </summary>
internal sealed class PathResolver
{
    private readonly PSCmdlet _cmdlet;

    public PathResolver(PSCmdlet cmdlet) => _cmdlet = cmdlet;

    /// <summary>A path that may not exist yet (an output, a folder, a tool), resolved without wildcards.</summary>
    public string Unresolved(string path)
    {
        string resolved = _cmdlet.SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out ProviderInfo provider, out _);
        RequireFileSystem(provider, path);
        return resolved;
    }

    /// <summary>
    /// Input files: wildcards for <c>-Path</c>, taken literally for <c>-LiteralPath</c>. A path that names no
    /// file is handed to <paramref name="skip"/> with its failure and left out, so the other inputs still run.
    /// </summary>
    public IEnumerable<string> InputFiles(IEnumerable<string> paths, bool literal, Action<OrasStagingException, string> skip)
    {
        foreach (string path in paths)
        {
            var files = literal ? Literal(path, skip) : Wildcard(path, skip);
            foreach (string file in files)
            {
                yield return file;
            }
        }
    }

    /// <summary>
    /// A written file as Get-Item shows it: through the provider, so it carries PSPath, pipes into -LiteralPath
    /// (names with [ ] stay literal) and gets the usual file table view.
    /// </summary>
    public object FileOutput(string path)
    {
        var items = _cmdlet.InvokeProvider.Item.Get(new[] { path }, true, true);
        return items.Count == 1 ? items[0] : new FileInfo(path);
    }

    private IEnumerable<string> Literal(string path, Action<OrasStagingException, string> skip)
    {
        string resolved;
        try
        {
            resolved = Unresolved(path);
            FileRules.ThrowIfFolder(resolved, "the input", "Give the path of a file.");
        }
        catch (OrasStagingException ex)
        {
            skip(ex, path);
            return Array.Empty<string>();
        }

        if (!File.Exists(resolved))
        {
            skip(new OrasStagingException(ErrorCode.PathNotFound, $"Cannot find the file '{resolved}'.",
                "Check the path; with -LiteralPath no wildcard is expanded."), path);
            return Array.Empty<string>();
        }

        return new[] { resolved };
    }

    private IEnumerable<string> Wildcard(string path, Action<OrasStagingException, string> skip)
    {
        Collection<string> found;
        try
        {
            found = _cmdlet.SessionState.Path.GetResolvedProviderPathFromPSPath(path, out ProviderInfo provider);
            RequireFileSystem(provider, path);
        }
        catch (OrasStagingException ex)
        {
            skip(ex, path);
            return Array.Empty<string>();
        }
        catch (ItemNotFoundException ex)
        {
            skip(new OrasStagingException(ErrorCode.PathNotFound, ex.Message,
                "Check the path. Use -LiteralPath for names that contain [ or ]."), path);
            return Array.Empty<string>();
        }

        if (found is null || found.Count == 0)
        {
            skip(new OrasStagingException(ErrorCode.PathNotFound, $"No file matches '{path}'.",
                "Check the path and the wildcard pattern."), path);
            return Array.Empty<string>();
        }

        // A wildcard that also matches folders means the files among them; a folder named outright is a mistake.
        var files = found.Where(item => !Directory.Exists(item)).ToList();
        if (files.Count == 0)
        {
            skip(new OrasStagingException(ErrorCode.InvalidArgument, $"'{path}' matches only folders, not files.",
                "Give the path of a file, or a wildcard that matches files."), path);
        }

        return files;
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
}
