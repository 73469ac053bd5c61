using OrasStaging.IO;

namespace OrasStaging.Staging;

/// <summary>
/// The cijoe stamp <c>&lt;image&gt;.digest</c>: one line, the layer blob digest, no trailing newline, read trimmed,
/// so images staged by the seed script and by this module are recognised by each other.
/// </summary>
internal static class StampFile
{
    public static string PathFor(string imagePath) => imagePath + ".digest";

    /// <summary>The trimmed digest, or null when there is no stamp or it is empty or unreadable.</summary>
    public static string? Read(string imagePath)
    {
        try
        {
            string text = File.ReadAllText(PathFor(imagePath)).Trim();
            return text.Length == 0 ? null : text;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public static void Write(string imagePath, string digest) =>
        PartialFile.WriteAllText(PathFor(imagePath), digest);

}
