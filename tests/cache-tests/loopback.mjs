// Preloaded (node --import) into the suite's server, whose server.listen(port) binds every
// interface: bind 127.0.0.1 instead, so the test origin is reachable from this machine only.
import net from 'net'
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if ((typeof args[0] === 'number' || typeof args[0] === 'string') &&
      (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1')
  }
  return listen.apply(this, args)
}
