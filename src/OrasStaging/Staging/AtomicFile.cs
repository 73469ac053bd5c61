using System.Security.Cryptography;
using System.Text;

namespace OrasStaging.Staging;

/// <summary>Small files written so a reader sees the old content or the new, never a torn one.</summary>
internal static class AtomicFile
{
    /// <summary>Eight random lowercase hex digits, for names that must not collide across processes.</summary>
    public static string RandomToken() => Convert.ToHexString(RandomNumberGenerator.GetBytes(4)).ToLowerInvariant();

    public static void WriteAllText(string path, string content)
    {
        string temp = $"{path}.{RandomToken()}.tmp";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                byte[] bytes = Encoding.UTF8.GetBytes(content);
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    public static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Best effort: the caller is already failing, or the file is a leftover nobody relies on.
        }
    }
}
