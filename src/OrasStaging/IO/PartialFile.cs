using System.Security.Cryptography;
using System.Text;

namespace OrasStaging.IO;

/// <summary>
/// The one way this module writes a file that someone else may read: write a partial file beside the target,
/// flush it, rename it over the target, and delete it on any failure, so a reader sees the old content or the
/// new, never a torn one. Every writer (images, stamps, receipts, saved and kept blobs) goes through here.
/// </summary>
internal sealed class PartialFile : IDisposable
{
    private bool _committed;

    /// <param name="target">The file the partial becomes.</param>
    /// <param name="partialPath">Where the bytes are written first; in the target's folder, so the rename is atomic.</param>
    public PartialFile(string target, string partialPath)
    {
        Target = target;
        PartialPath = partialPath;
    }

    public string Target { get; }

    public string PartialPath { get; }

    /// <summary><c>&lt;target&gt;.&lt;random&gt;.partial</c>: visible, so a user sees what an unfinished run left.</summary>
    public static PartialFile RandomBeside(string target) => new(target, $"{target}.{RandomToken()}{Suffix}");

    /// <summary><c>.&lt;name&gt;.&lt;purpose&gt;.&lt;random&gt;.tmp</c> in the target's folder: hidden, for converters.</summary>
    public static PartialFile HiddenBeside(string target, string purpose) => new(target, HiddenPathBeside(target, purpose));

    public static string HiddenPathBeside(string target, string purpose) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(target)) ?? ".",
            $".{Path.GetFileName(target)}.{purpose}.{RandomToken()}.tmp");

    public const string Suffix = ".partial";

    /// <summary>Eight random lowercase hex digits, for names that must not collide across processes.</summary>
    public static string RandomToken() => Convert.ToHexString(RandomNumberGenerator.GetBytes(4)).ToLowerInvariant();

    /// <summary>True for a name <see cref="RandomBeside"/> made for <paramref name="target"/>.</summary>
    public static bool IsRandomPartialOf(string target, string candidate)
    {
        string name = Path.GetFileName(target);
        string file = Path.GetFileName(candidate);
        if (!file.StartsWith(name + ".", StringComparison.Ordinal) || !file.EndsWith(Suffix, StringComparison.Ordinal)
            || file.Length != name.Length + 1 + 8 + Suffix.Length)
        {
            return false;
        }

        return file.AsSpan(name.Length + 1, 8).ToString().All(char.IsAsciiHexDigitLower);
    }

    /// <summary>Renames the partial over the target. The caller has flushed and closed what it wrote.</summary>
    public void Commit(bool overwrite = true)
    {
        File.Move(PartialPath, Target, overwrite);
        _committed = true;
    }

    /// <summary>Leaves the partial where it is for a later run to continue (a resumable failure): Dispose keeps it.</summary>
    public void Keep() => _committed = true;

    /// <summary>Deletes the partial unless it was committed or kept: the failure path of every writer.</summary>
    public void Dispose()
    {
        if (!_committed)
        {
            TryDelete(PartialPath);
        }
    }

    /// <summary>A small file (stamp, receipt) written whole or not at all.</summary>
    public static void WriteAllText(string path, string content)
    {
        using var partial = new PartialFile(path, $"{path}.{RandomToken()}.tmp");
        using (var stream = new FileStream(partial.PartialPath, FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            stream.Write(Encoding.UTF8.GetBytes(content));
            stream.Flush(flushToDisk: true);
        }

        partial.Commit();
    }

    /// <summary>Best effort: the caller is already failing, or the file is a leftover nobody relies on.</summary>
    public static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }
}
