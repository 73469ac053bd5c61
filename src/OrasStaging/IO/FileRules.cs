namespace OrasStaging.IO;

/// <summary>
/// Rules about a path given by the user that every cmdlet shares. A folder where a file is expected is always
/// <see cref="ErrorCode.InvalidArgument"/>, whichever role the path plays, so scripts can match one id.
/// </summary>
internal static class FileRules
{
    /// <summary>Fails when <paramref name="path"/> is a folder; <paramref name="role"/> names what was expected ("the destination").</summary>
    public static void ThrowIfFolder(string path, string role, string recommendedAction)
    {
        if (Directory.Exists(path))
        {
            throw FolderGiven(path, role, recommendedAction);
        }
    }

    public static OrasStagingException FolderGiven(string path, string role, string recommendedAction) =>
        new(ErrorCode.InvalidArgument, $"'{path}' is a folder; {role} must be a file.", recommendedAction);

    /// <summary>
    /// The text of a config file the user named (cijoe config, registries.conf): a folder is
    /// <see cref="ErrorCode.InvalidArgument"/> (reading one fails as "access denied", which would send the user to fix
    /// permissions), a missing file <see cref="ErrorCode.PathNotFound"/>, an unreadable one
    /// <see cref="ErrorCode.ConfigInvalid"/>; <paramref name="what"/> names the file in messages ("the config file").
    /// </summary>
    public static string ReadConfigText(string path, string what, string folderAction, string notFoundAction)
    {
        ThrowIfFolder(path, what, folderAction);
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new OrasStagingException(ErrorCode.PathNotFound, $"Cannot find {what} '{path}'.", notFoundAction, ex);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.SecurityException)
        {
            throw new OrasStagingException(ErrorCode.ConfigInvalid, $"Cannot read {what} '{path}': {ex.Message}",
                "Make the file readable by this user (and not held open exclusively by another process).", ex);
        }
    }
}
